"""A control plane of a test module's own, for tests that must not share the session's: the
session's operator watches the whole cluster, and deploy/'s objects applied there would clash
with a Helm release of the same names."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTCP = REPO / "hack" / "testcp" / "testcp.sh"
CRDS = REPO / "crds"


def built(script: Path, timeout: float, *args: str) -> str:
    """What ``bash SCRIPT build ARGS...`` prints last (the built thing), building it now unless
    its cache has it; the test fails with the script's error output otherwise."""
    import pytest

    done = subprocess.run(
        ["bash", str(script), "build", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        pytest.fail(f"{script.relative_to(REPO)} build failed:\n{done.stderr[-6000:]}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Kube:
    kubeconfig: Path
    kubectl_bin: str

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc


def _testcp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TESTCP), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def own_control_plane(workdir: Path) -> Iterator[Kube]:
    """Start a control plane with state in ``workdir`` and the CRDs installed; stop it after."""
    started = _testcp("start", str(workdir))
    if started.returncode != 0:
        raise AssertionError(f"testcp start failed:\n{started.stderr[-4000:]}")
    kubectl = Path(sys.executable).parent / "kubectl"
    kube = Kube(workdir / "kubeconfig", str(kubectl) if kubectl.exists() else "kubectl")
    try:
        kube.kubectl("apply", "--server-side", "-k", str(CRDS))
        kube.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/swarmjobs.kswarm.dev"
        )
        yield kube
    finally:
        _testcp("stop", str(workdir), timeout=60)
