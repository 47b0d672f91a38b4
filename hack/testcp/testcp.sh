#!/usr/bin/env bash
# A real, throw-away Kubernetes control plane for tests: embedded etcd + kube-apiserver in
# one binary built from hack/testcp (no Docker, no kubelet, no controller-manager).
#
#   testcp.sh build              build (or reuse) the binary; print its path
#   testcp.sh path               print where the binary is cached (exit 1 if not built yet)
#   testcp.sh start DIR [-- ARGS] start it with state in DIR; print KUBECONFIG=DIR/kubeconfig
#                                (ARGS: extra kube-apiserver flags)
#   testcp.sh stop DIR           stop it (SIGTERM, then SIGKILL) and remove its state
#   testcp.sh status DIR         exit 0 if it is running
#
# The binary is cached outside the repo in
#   ${KSWARM_CACHE:-$HOME/.cache/kswarm}/testcp/<k8s-version>-<hash>/testcp
# The first build downloads Go modules and compiles kube-apiserver: slow (tens of minutes
# on two cores). Later starts take seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KSWARM_CACHE:-$HOME/.cache/kswarm}/testcp"
READY_TIMEOUT="${TESTCP_READY_TIMEOUT:-120}"

die() { echo "testcp: $*" >&2; exit 1; }
log() { echo "testcp: $*" >&2; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return; }
  die "no Go toolchain found (set GO=/path/to/go)"
}

k8s_version() { awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$HERE/go.mod"; }

binary_path() {
  local hash
  hash="$(cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" | sha256sum | cut -c1-16)"
  echo "$CACHE_ROOT/$(k8s_version)-$hash/testcp"
}

cmd_build() {
  local bin dir go start
  bin="$(binary_path)"
  if [[ -x "$bin" ]]; then echo "$bin"; return; fi
  dir="$(dirname "$bin")"
  mkdir -p "$dir"
  go="$(find_go)"
  # One build at a time (parallel test sessions share the cache).
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    log "building kube-apiserver $(k8s_version) into $bin (first build is slow)"
    start=$SECONDS
    (cd "$HERE" && GOFLAGS=-trimpath "$go" build -ldflags="-s -w" -o "$bin.tmp" .) \
      || { rm -f "$bin.tmp"; die "go build failed"; }
    mv -f "$bin.tmp" "$bin"
    log "built in $((SECONDS - start))s"
  fi
  exec 9>&-
  echo "$bin"
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

is_running() { [[ -f "$1/pid" ]] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

free_port() {
  local port i
  for i in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    # A port nobody answers on is taken as free.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free loopback port found"
}

gen_certs() {
  local d="$1"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=testcp-ca" \
      -keyout ca.key -out ca.crt -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" \
      "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment" \
      >server.ext
    openssl req -new -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout server.key -out server.csr
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile server.ext -out server.crt
    printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" \
      >client.ext
    openssl req -new -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" \
      -keyout admin.key -out admin.csr
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile client.ext -out admin.crt
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    rm -f ./*.csr ./*.ext ./*.srl
  ) >/dev/null 2>&1 || die "openssl failed to generate certificates in $d"
}

b64() { base64 <"$1" | tr -d '\n'; }

write_kubeconfig() {
  local dir="$1" port="$2"
  cat >"$dir/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testcp
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 "$dir/certs/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$dir/certs/admin.crt")
    client-key-data: $(b64 "$dir/certs/admin.key")
contexts:
- name: testcp
  context:
    cluster: testcp
    user: admin
    namespace: default
current-context: testcp
EOF
  mv -f "$dir/kubeconfig.tmp" "$dir/kubeconfig"
}

# launch DIR BIN PORT [ARGS]: start kube-apiserver and wait for /readyz.
# Returns 0 when ready, 2 when the port was taken meanwhile; dies on any other failure.
launch() {
  local dir="$1" bin="$2" port="$3" c="$1/certs" pid deadline
  shift 3
  rm -rf "$dir/etcd"
  # Own session, no inherited stdio: it outlives the caller and never holds its pipes open.
  setsid "$bin" \
    --etcd-data-dir="$dir/etcd" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$port" \
    --cert-dir="$c" \
    --tls-cert-file="$c/server.crt" \
    --tls-private-key-file="$c/server.key" \
    --client-ca-file="$c/ca.crt" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$c/sa.pub" \
    --service-account-signing-key-file="$c/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling=false \
    "$@" \
    </dev/null >"$dir/apiserver.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  echo "$port" >"$dir/port"
  write_kubeconfig "$dir" "$port"

  deadline=$((SECONDS + READY_TIMEOUT))
  until curl -fsS --max-time 5 --cacert "$c/ca.crt" --cert "$c/admin.crt" --key "$c/admin.key" \
      "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/pid"
      grep -q "address already in use" "$dir/apiserver.log" && return 2
      tail -n 30 "$dir/apiserver.log" >&2 || true
      die "kube-apiserver exited during start; log: $dir/apiserver.log"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$dir/apiserver.log" >&2 || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "kube-apiserver not ready after ${READY_TIMEOUT}s; log: $dir/apiserver.log"
    fi
    sleep 0.5
  done
}

cmd_start() {
  [[ $# -ge 1 ]] || die "usage: testcp.sh start DIR [-- extra kube-apiserver flags]"
  local dir bin attempt rc
  dir="$(abs_dir "$1")"; shift
  [[ "${1:-}" == "--" ]] && shift
  is_running "$dir" && die "already running in $dir (pid $(cat "$dir/pid")); stop it first"
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
  bin="$(cmd_build)"

  rm -rf "$dir/certs"
  gen_certs "$dir/certs"
  for attempt in 1 2 3; do
    rc=0
    launch "$dir" "$bin" "$(free_port)" "$@" || rc=$?
    [[ $rc -eq 0 ]] && { echo "KUBECONFIG=$dir/kubeconfig"; return; }
    log "port taken while starting (attempt $attempt); retrying on another port"
  done
  die "could not bind a free loopback port; log: $dir/apiserver.log"
}

cmd_stop() {
  [[ $# -eq 1 ]] || die "usage: testcp.sh stop DIR"
  local dir="$1" pid i
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/pid" ]]; then
    pid="$(cat "$dir/pid")"
    if kill -TERM "$pid" 2>/dev/null; then
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still alive after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  # Keep apiserver.log for post-mortems; drop the state.
  rm -rf "$dir/etcd" "$dir/certs" "$dir/pid" "$dir/port" "$dir/kubeconfig"
}

cmd_status() {
  [[ $# -eq 1 ]] || die "usage: testcp.sh status DIR"
  if is_running "$1"; then echo "running (pid $(cat "$1/pid"))"; else echo "stopped"; return 1; fi
}

main() {
  case "${1:-}" in
    build) shift; cmd_build "$@" ;;
    path) local bin; bin="$(binary_path)"; echo "$bin"; [[ -x "$bin" ]] ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) die "usage: testcp.sh {build|path|start DIR [-- ARGS]|stop DIR|status DIR}" ;;
  esac
}

# One line, so bash has read the whole file before running anything: editing (or checking
# out) this script while a long build runs cannot change what the running copy does.
main "$@"; exit $?
