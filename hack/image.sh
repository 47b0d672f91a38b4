#!/usr/bin/env bash
# The kswarm image, built and run here without a container registry or daemon (buildah, vfs
# storage, chroot isolation), for the image tests and for trying the image by hand.
#
#   image.sh build [-t T]              build (or reuse) the image; print its name
#   image.sh name [-t T]               print the image name for the current sources (exit 1 if
#                                      not built)
#   image.sh run [-t T] [OPTS] -- CMD  run CMD in a fresh container of the image (builds first
#                                      if needed); OPTS are buildah-run options (-e K=V, -v ...)
#   image.sh size [-t T]               print the image's size
#   image.sh clean                     remove the cached images, containers and base
#
# -t/--target T picks the Containerfile's target: runtime (default; localhost/kswarm:KEY, the
# operator, worker, simulator and CLI) or dashboard (localhost/kswarm-dashboard:KEY, the same
# plus the dashboard extra).
#
# What it does, each step cached outside the repo in ${KSWARM_CACHE:-$HOME/.cache/kswarm}/image:
#   1. bases: a minimal Debian bookworm with python3 and python3-venv (mmdebstrap; without
#      manuals, docs and translations, as the official slim image), imported into buildah
#      storage as localhost/kswarm-base:KEY; and the same plus binutils for the build stages,
#      localhost/kswarm-build-base:KEY; each keyed by its mmdebstrap command.
#   2. wheelhouse: every dependency's wheel, the dashboard extra's included, made on this host
#      with its own pip settings (so the image build needs no network), keyed by pyproject.toml.
#   3. image: the Containerfile built on that base from a staged copy of the package sources
#      plus the wheelhouse, as localhost/kswarm:KEY (or kswarm-dashboard:KEY); keyed by the
#      Containerfile, the sources, the base, the wheelhouse and the target. Older images of the
#      same target are removed.
# Needs (Debian packages): buildah, mmdebstrap. Runs as root (mmdebstrap, chroot isolation).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KSWARM_CACHE:-$HOME/.cache/kswarm}/image"
# What goes into the build context: the package and what pip needs to build it.
SOURCES=(Containerfile .containerignore pyproject.toml README.md alembic.ini hack/image-prune.sh
  kswarm operator workflows dashboard crds migrations)
# No manuals, docs (but their copyright files) or translations: about 50 MB less, as the
# official python:3.11-slim-bookworm image leaves them out too.
SLIM=('--dpkgopt=path-exclude=/usr/share/man/*' '--dpkgopt=path-exclude=/usr/share/info/*'
  '--dpkgopt=path-exclude=/usr/share/locale/*' '--dpkgopt=path-include=/usr/share/locale/locale.alias'
  '--dpkgopt=path-exclude=/usr/share/doc/*' '--dpkgopt=path-include=/usr/share/doc/*/copyright')
BASE_CMD=(mmdebstrap --variant=minbase --include=python3,python3-venv "${SLIM[@]}" bookworm)
# The build stages' base (BUILD_BASE): the same Python, plus binutils to strip the venv.
BUILD_BASE_CMD=(mmdebstrap --variant=minbase --include=python3,python3-venv,binutils "${SLIM[@]}"
  bookworm)
TARGET=runtime

die() { echo "image.sh: $*" >&2; exit 1; }
log() { echo "image.sh: $*" >&2; }

bah() {
  buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver vfs "$@"
}

need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 \
      || die "$tool is missing: install Debian's package '$tool' (apt-get install $tool)"
  done
}

python_bin() { echo "${PYTHON:-$ROOT/.venv/bin/python}"; }

# base_key [build]: the key of the runtime base, or of the build stages' base.
base_key() {
  if [[ "${1:-}" == build ]]; then
    printf '%s\n' "${BUILD_BASE_CMD[*]}" | sha256sum | cut -c1-16
  else
    printf '%s\n' "${BASE_CMD[*]}" | sha256sum | cut -c1-16
  fi
}
wheels_key() { sha256sum <"$1/pyproject.toml" | cut -c1-16; }

# The build context: the SOURCES that git tracks or would track (no caches, no venv).
stage_context() {
  local dir="$1"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$ROOT" && git ls-files -z -co --exclude-standard -- "${SOURCES[@]}" \
    | tar --null -T - -cf -) | tar -C "$dir" -xf -
}

context_key() {
  local dir="$1"
  {
    (cd "$dir" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
      if [[ -L "$f" ]]; then echo "$f -> $(readlink "$f")"; else sha256sum "$f"; fi
    done)
    echo "base $(base_key) $(base_key build) wheels $(wheels_key "$dir") target $TARGET"
  } | sha256sum | cut -c1-16
}

# build_base [build]: the runtime base (localhost/kswarm-base:KEY) or the build stages' base
# (localhost/kswarm-build-base:KEY), imported from mmdebstrap's tarball; print its name.
build_base() {
  local key tar name cmd
  if [[ "${1:-}" == build ]]; then
    name=kswarm-build-base cmd=("${BUILD_BASE_CMD[@]}")
  else
    name=kswarm-base cmd=("${BASE_CMD[@]}")
  fi
  key="$(base_key "${1:-}")"
  tar="$CACHE/${name#kswarm-}-$key.tar"
  if bah inspect --type image "localhost/$name:$key" >/dev/null 2>&1; then
    echo "localhost/$name:$key"; return
  fi
  if [[ ! -s "$tar" ]]; then
    need mmdebstrap
    log "building $name (${cmd[*]}); about 3 minutes"
    # mmdebstrap picks its output format by the name's extension: .tar for a tarball.
    "${cmd[@]}" "$tar.part.tar" >&2 || { rm -rf "$tar.part.tar"; die "mmdebstrap failed"; }
    mv -f "$tar.part.tar" "$tar"
  fi
  local ctr
  ctr="$(bah from scratch)"
  bah add "$ctr" "$tar" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bah commit -q --rm "$ctr" "localhost/$name:$key" >/dev/null
  echo "localhost/$name:$key"
}

# build_wheels CTX: the wheelhouse for the staged context CTX's pyproject.toml.
build_wheels() {
  local dir ctx="$1"
  dir="$CACHE/wheels-$(wheels_key "$ctx")"
  if [[ -f "$dir/.done" ]]; then echo "$dir"; return; fi
  log "making the wheelhouse with this host's pip into $dir"
  rm -rf "$dir" && mkdir -p "$dir"
  # Every dependency (the dashboard extra's too: one wheelhouse for both targets), and
  # setuptools and wheel to build kswarm's own wheel in the image.
  "$(python_bin)" -P -m pip wheel -q --wheel-dir "$dir" "$ctx[dashboard]" 'setuptools>=69' wheel >&2 \
    || die "pip wheel failed"
  rm -f "$dir"/kswarm-*.whl  # the image builds its own from the staged sources
  touch "$dir/.done"
  echo "$dir"
}

repo_name() {
  case "$TARGET" in
    runtime) echo localhost/kswarm ;;
    dashboard) echo localhost/kswarm-dashboard ;;
    *) die "unknown target '$TARGET' (runtime or dashboard)" ;;
  esac
}

# image_name DIR: stage the context into DIR; print the image's name for it.
image_name() {
  repo_name >/dev/null
  stage_context "$1"
  echo "$(repo_name):$(context_key "$1")"
}

cmd_build() {
  need buildah git
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  local image base build_base wheels ctx start
  ctx="$CACHE/context-$TARGET"
  image="$(image_name "$ctx")"
  if bah inspect --type image "$image" >/dev/null 2>&1; then
    rm -rf "$ctx"; exec 9>&-; echo "$image"; return
  fi
  start=$SECONDS
  base="$(build_base)"
  build_base="$(build_base build)"
  wheels="$(build_wheels "$ctx")"
  cp -al "$wheels" "$ctx/.wheelhouse" 2>/dev/null || cp -a "$wheels" "$ctx/.wheelhouse"
  log "building $image on $base"
  bah bud --isolation chroot --network host --pull-never --layers=false \
    --build-arg "BASE=$base" --build-arg "BUILD_BASE=$build_base" \
    --build-arg WHEELHOUSE=.wheelhouse \
    --target "$TARGET" -f "$ctx/Containerfile" -t "$image" "$ctx" >&2 \
    || die "buildah bud failed"
  rm -rf "$ctx"
  # One image per target at a time: vfs keeps a full copy of every layer.
  local old
  for old in $(bah images --format '{{.Name}}:{{.Tag}}' | grep "^$(repo_name):" || true); do
    [[ "$old" == "$image" ]] || bah rmi -f "$old" >/dev/null 2>&1 || true
  done
  bah rmi --prune >/dev/null 2>&1 || true
  log "built $image in $((SECONDS - start))s"
  exec 9>&-
  echo "$image"
}

cmd_name() {
  local image ctx
  mkdir -p "$CACHE"
  ctx="$(mktemp -d "$CACHE/name.XXXXXX")"
  image="$(image_name "$ctx")"
  rm -rf "$ctx"
  echo "$image"
  bah inspect --type image "$image" >/dev/null 2>&1
}

# Containers of runs whose image.sh has gone (killed without its cleanup) take disk: drop them.
prune_runs() {
  local name pid
  for name in $(bah containers --format '{{.ContainerName}}' 2>/dev/null | grep '^kswarm-run-' || true); do
    pid="${name#kswarm-run-}"
    pid="${pid%%-*}"
    kill -0 "$pid" 2>/dev/null || bah rm "$name" >/dev/null 2>&1 || true
  done
}

cmd_run() {
  local opts=() image ctr child
  while [[ $# -gt 0 && "$1" != "--" ]]; do opts+=("$1"); shift; done
  if [[ "${1:-}" == "--" ]]; then shift; else set -- "${opts[@]}"; opts=(); fi
  [[ $# -gt 0 ]] || die "usage: image.sh run [buildah-run options] -- COMMAND [ARGS...]"
  image="$(cmd_build)"
  prune_runs
  ctr="$(bah from --pull-never --name "kswarm-run-$$-$RANDOM" "$image")"
  trap 'bah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  # buildah runs in the background so a SIGTERM to this script reaches the command at once,
  # and the container is removed after it exits.
  bah run --isolation chroot --network host "${opts[@]}" "$ctr" -- "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
  local rc=0
  wait "$child" || rc=$?
  if kill -0 "$child" 2>/dev/null; then wait "$child" || rc=$?; fi
  exit "$rc"
}

cmd_size() {
  local image
  image="$(cmd_build)"
  bah inspect --type image --format '{{.Size}}' "$image" 2>/dev/null \
    || bah images --format '{{.Size}}' "$image"
}

cmd_clean() {
  bah rm --all >/dev/null 2>&1 || true
  bah rmi --all -f >/dev/null 2>&1 || true
  rm -rf "$CACHE"
}

# Each command's leading -t/--target T option sets TARGET; the rest are the command's.
main() {
  local command="${1:-}"
  [[ $# -gt 0 ]] && shift
  if [[ "${1:-}" == -t || "${1:-}" == --target ]]; then
    [[ $# -ge 2 ]] || die "$1 needs a target: runtime or dashboard"
    TARGET="$2"; shift 2
  fi
  set -- "$command" "$@"
  case "${1:-}" in
    build) shift; cmd_build "$@" ;;
    name) shift; cmd_name "$@" ;;
    run) shift; cmd_run "$@" ;;
    size) shift; cmd_size "$@" ;;
    clean) shift; cmd_clean "$@" ;;
    *) die "usage: image.sh {build|name|run [OPTS] -- CMD...|size|clean} (after the command: -t runtime|dashboard)" ;;
  esac
}

# One line, so bash has read the whole file before running anything.
main "$@"; exit $?
