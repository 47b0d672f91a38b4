#!/usr/bin/env bash
# mypy --strict and import-linter over the installed layout: kswarm/ plus operator/, workflows/ and dashboard/
# mapped to kswarm.operator, kswarm.workflows and kswarm.dashboard (as setuptools installs them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
stage=$root/build/typecheck
rm -rf "$stage" && mkdir -p "$stage/kswarm"
for item in "$root"/kswarm/*; do ln -s "$item" "$stage/kswarm/$(basename "$item")"; done
for sub in operator workflows dashboard; do
  [ -d "$root/$sub" ] && ln -s "$root/$sub" "$stage/kswarm/$sub"
done
cd "$stage"
"$py" -m mypy --config-file "$root/pyproject.toml" -p kswarm "$@"
# The import layers, checked on the same layout.
PYTHONPATH="$stage" "$(dirname "$py")/lint-imports" --no-cache "$root/pyproject.toml"
