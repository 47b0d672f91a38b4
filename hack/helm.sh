#!/usr/bin/env bash
# Helm (v4, the version pinned in hack/helm/go.mod) built from its Go module, for the chart tests
# and for anyone without a helm binary.
#
#   helm.sh build        build (or reuse) the binary; print its path
#   helm.sh path         print where the binary is cached (exit 1 if not built yet)
#   helm.sh run ARGS...  run helm with ARGS (builds first if needed)
#
# The binary is cached outside the repo in
#   ${KSWARM_CACHE:-$HOME/.cache/kswarm}/helm/<helm-version>-<hash>/helm
# keyed by hack/helm/go.mod and go.sum. The first build downloads the modules and compiles
# (minutes on two cores); later calls take no time.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/helm"
CACHE_ROOT="${KSWARM_CACHE:-$HOME/.cache/kswarm}/helm"

die() { echo "helm.sh: $*" >&2; exit 1; }
log() { echo "helm.sh: $*" >&2; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  [[ -x /usr/local/go/bin/go ]] && { echo /usr/local/go/bin/go; return; }
  die "no Go toolchain found (set GO=/path/to/go)"
}

helm_version() { awk '$1 == "helm.sh/helm/v4" && $2 ~ /^v/ { print $2; exit }' "$HERE/go.mod"; }

binary_path() {
  local hash
  hash="$(cat "$HERE/go.mod" "$HERE/go.sum" | sha256sum | cut -c1-16)"
  echo "$CACHE_ROOT/$(helm_version)-$hash/helm"
}

cmd_build() {
  local bin dir go start version
  bin="$(binary_path)"
  if [[ -x "$bin" ]]; then echo "$bin"; return; fi
  dir="$(dirname "$bin")"
  mkdir -p "$dir"
  go="$(find_go)"
  version="$(helm_version)"
  # One build at a time (parallel test sessions share the cache).
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    log "building helm $version into $bin (first build takes minutes)"
    start=$SECONDS
    # The version is stamped as helm's own Makefile does, so `helm version` tells the truth.
    (cd "$HERE" && CGO_ENABLED=0 GOFLAGS=-trimpath "$go" build \
      -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
      -o "$bin.tmp" helm.sh/helm/v4/cmd/helm) \
      || { rm -f "$bin.tmp"; die "go build failed"; }
    mv -f "$bin.tmp" "$bin"
    log "built in $((SECONDS - start))s"
  fi
  exec 9>&-
  echo "$bin"
}

main() {
  case "${1:-}" in
    build) shift; cmd_build "$@" ;;
    path) local bin; bin="$(binary_path)"; echo "$bin"; [[ -x "$bin" ]] ;;
    run) shift; local bin; bin="$(cmd_build)"; exec "$bin" "$@" ;;
    *) die "usage: helm.sh {build|path|run ARGS...}" ;;
  esac
}

# One line, so bash has read the whole file before running anything.
main "$@"; exit $?
