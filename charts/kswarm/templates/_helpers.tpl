{{/* Labels on every object's metadata (deploy/ has the first two; Helm's own follow). */}}
{{- define "kswarm.labels" -}}
app.kubernetes.io/part-of: kswarm
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of a component's pods and selectors: name, component, part-of. */}}
{{- define "kswarm.podLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: kswarm
{{- end }}

{{- define "kswarm.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The dashboard's image: the kswarm image plus the dashboard extra. */}}
{{- define "kswarm.dashboardImage" -}}
{{ .Values.dashboard.image.repository }}:{{ .Values.dashboard.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The container fields every kswarm container shares: image and pull policy. */}}
{{- define "kswarm.containerImage" -}}
image: {{ include "kswarm.image" . }}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/* Settings and the ledger's URL, as deploy/ gives them to the operator, worker, dashboard. */}}
{{- define "kswarm.commonEnv" -}}
envFrom:
  - configMapRef:
      name: kswarm-config
env:
  - name: KSWARM_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.database.secretName }}
        key: {{ .Values.database.secretKey }}
{{- end }}

{{/* Scheduling and pull secrets of a pod; the argument is a component's values. */}}
{{- define "kswarm.scheduling" -}}
{{- with .component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The static pools document (the simulator's "default" pool first, when enabled). */}}
{{- define "kswarm.staticPools" -}}
{{- $pools := list -}}
{{- if .Values.simulator.enabled -}}
{{- $sim := dict "name" "default" "model" .Values.simulator.model "replicas" (list (printf "http://kswarm-sim.%s.svc:8000" .Release.Namespace)) "maxConcurrency" 256 "router" "least-load" -}}
{{- $pools = append $pools $sim -}}
{{- end -}}
{{- $pools = concat $pools .Values.staticPools -}}
{{- toYaml (dict "pools" $pools) -}}
{{- end }}

{{- define "kswarm.staticPoolNames" -}}
{{- $names := list -}}
{{- if .Values.simulator.enabled }}{{ $names = append $names "default" }}{{ end -}}
{{- range .Values.staticPools }}{{ $names = append $names .name }}{{ end -}}
{{- join "," $names -}}
{{- end }}
