"""An autoscaled managed pool gets an autoscaler on its queue, and the operator leaves the
Deployment's size to it.

The test control plane runs no controllers: no HPA controller scales anything and no garbage
collector deletes owned objects. The tests read back what the operator applied, play the
autoscaler with ``kubectl scale`` (the scale subresource, as the HPA controller writes it), and
check the owner reference through which a cluster's garbage collector removes the autoscaler
with its pool. KEDA's own CRD comes from KEDA's Go module (``github.com/kedacore/keda/v2``,
Apache-2.0, file ``config/crd/bases/keda.sh_scaledobjects.yaml``), fetched with ``go mod
download`` into the Go module cache, so the ScaledObject is checked against KEDA's real schema.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from operator_support import apply, get, wait_for

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

API = "kswarm.dev/v1alpha1"
KEDA_MODULE = "github.com/kedacore/keda/v2@v2.20.2"
KEDA_CRD_FILE = "config/crd/bases/keda.sh_scaledobjects.yaml"
KEDA_CRD = "scaledobjects.keda.sh"


def modelpool(name: str, **spec: Any) -> dict[str, Any]:
    body = {"model": "Qwen/Qwen2.5-7B-Instruct", **spec}
    return {"apiVersion": API, "kind": "ModelPool", "metadata": {"name": name}, "spec": body}


def find(cp: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object with its managed fields, or ``None`` when there is none."""
    res = cp.kubectl(
        "get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields", check=False
    )
    if res.returncode == 0:
        return dict(json.loads(res.stdout))
    assert "NotFound" in res.stderr, res.stderr
    return None


def deployment(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any]:
    found = find(cp, "deployment", name, namespace)
    assert found is not None, f"no Deployment {namespace}/{name}"
    return found


def owned_by_pool(obj: dict[str, Any], pool: dict[str, Any]) -> bool:
    (ref,) = obj["metadata"]["ownerReferences"]
    return bool(
        ref["kind"] == "ModelPool"
        and ref["uid"] == pool["metadata"]["uid"]
        and ref["controller"]
        and ref["blockOwnerDeletion"]
    )


def replicas_managers(deployment: dict[str, Any]) -> set[str]:
    """The field managers that own the Deployment's ``spec.replicas``."""
    return {
        m["manager"]
        for m in deployment["metadata"].get("managedFields", [])
        if "f:replicas" in (m.get("fieldsV1") or {}).get("f:spec", {})
    }


def patch_pool(cp: ControlPlane, name: str, namespace: str, ops: list[dict[str, Any]]) -> None:
    cp.kubectl("patch", "mp", name, "-n", namespace, "--type=json", "-p", json.dumps(ops))


def test_an_autoscaled_pool_gets_an_hpa_on_its_queue_and_never_fights_it(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, modelpool("qwen", replicas=3), namespace)
    wait_for("the Deployment", lambda: find(cp, "deployment", "pool-qwen", namespace))
    assert find(cp, "hpa", "pool-qwen", namespace) is None

    # Autoscaling on: an HPA on the queue metric, owned by the pool; the 3 replicas keep
    # running (no dip to 1 while the HPA takes over), and the operator lets go of the field.
    scaling = {"minReplicas": 2, "maxReplicas": 6, "targetWaitingPerReplica": 0.5}
    patch_pool(
        cp, "qwen", namespace, [{"op": "add", "path": "/spec/autoscaling", "value": scaling}]
    )
    hpa = wait_for("the HPA", lambda: find(cp, "hpa", "pool-qwen", namespace))
    assert owned_by_pool(hpa, get(cp, "mp", "qwen", namespace))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "pool-qwen",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm:num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "500m"},
            },
        }
    ]
    dep = deployment(cp, "pool-qwen", namespace)
    assert dep["spec"]["replicas"] == 3
    assert "kswarm-operator" not in replicas_managers(dep), dep["metadata"]["managedFields"]

    # The HPA scales; a later change of the pool changes the HPA and leaves its size alone.
    cp.kubectl("scale", "deployment", "pool-qwen", "-n", namespace, "--replicas=5")
    patch_pool(
        cp,
        "qwen",
        namespace,
        [{"op": "replace", "path": "/spec/autoscaling/maxReplicas", "value": 8}],
    )
    wait_for(  # the HPA is applied after the Deployment, in the same pass
        "the HPA to follow maxReplicas",
        lambda: get(cp, "hpa", "pool-qwen", namespace)["spec"]["maxReplicas"] == 8,
        timeout=30,
    )
    assert get(cp, "deployment", "pool-qwen", namespace)["spec"]["replicas"] == 5

    # Autoscaling off: the HPA goes, and the operator sizes the Deployment again.
    patch_pool(cp, "qwen", namespace, [{"op": "remove", "path": "/spec/autoscaling"}])
    wait_for("the HPA to go", lambda: find(cp, "hpa", "pool-qwen", namespace) is None, timeout=30)
    dep = wait_for(
        "the Deployment back at spec.replicas",
        lambda: (d := deployment(cp, "pool-qwen", namespace))["spec"]["replicas"] == 3 and d,
        timeout=30,
    )
    assert "kswarm-operator" in replicas_managers(dep)


def test_a_new_autoscaled_pool_starts_at_spec_replicas(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, modelpool("fresh", replicas=2, autoscaling={"maxReplicas": 4}), namespace)
    hpa = wait_for("the HPA", lambda: find(cp, "hpa", "pool-fresh", namespace))
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)  # CRD default
    target = hpa["spec"]["metrics"][0]["pods"]["target"]
    assert target == {"type": "AverageValue", "averageValue": "2"}  # CRD default
    dep = deployment(cp, "pool-fresh", namespace)
    assert dep["spec"]["replicas"] == 2
    assert replicas_managers(dep) == {"kswarm-operator-replicas"}


def _go() -> str:
    found = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise AssertionError("no Go toolchain (set GO=...): the test control plane needs it too")
    return found


def keda_crd(tmp: Path) -> Path:
    """KEDA's ScaledObject CRD as KEDA publishes it, from its Go module (cached by Go)."""
    done = subprocess.run(
        [_go(), "mod", "download", "-json", KEDA_MODULE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise AssertionError(f"go mod download {KEDA_MODULE} failed: {done.stdout}{done.stderr}")
    return Path(info["Dir"]) / KEDA_CRD_FILE


@pytest.fixture
def keda(control_plane: ControlPlane, tmp_path: Path) -> Iterator[None]:
    """KEDA's CRD installed for one test, and removed after it (with every ScaledObject)."""
    cp = control_plane
    cp.kubectl("apply", "--server-side", "-f", str(keda_crd(tmp_path)))
    cp.kubectl("wait", "--for=condition=Established", f"crd/{KEDA_CRD}", "--timeout=60s")
    try:
        yield
    finally:
        cp.kubectl("delete", "crd", KEDA_CRD, "--wait=true", "--timeout=60s", timeout=70)


def test_where_keda_is_installed_an_autoscaled_pool_gets_a_scaled_object(
    control_plane: ControlPlane,
    kswarm_operator: OperatorProcess,
    namespace: str,
    request: pytest.FixtureRequest,
) -> None:
    cp = control_plane
    scaling = {"minReplicas": 1, "maxReplicas": 4, "targetWaitingPerReplica": 3}
    apply(cp, modelpool("early", replicas=1, autoscaling=scaling), namespace)
    wait_for("the HPA before KEDA", lambda: find(cp, "hpa", "pool-early", namespace))

    request.getfixturevalue("keda")
    apply(cp, modelpool("late", replicas=1, autoscaling=scaling), namespace)
    so = wait_for("the ScaledObject", lambda: find(cp, "scaledobject", "pool-late", namespace))
    assert owned_by_pool(so, get(cp, "mp", "late", namespace))
    assert find(cp, "hpa", "pool-late", namespace) is None
    assert so["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "pool-late",
    }
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 4)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
        "query": f'sum(vllm:num_requests_waiting{{namespace="{namespace}",'
        'pod=~"pool-late-[a-z0-9]+-[a-z0-9]+"})',
        "threshold": "3",
    }
    late = deployment(cp, "pool-late", namespace)
    assert late["spec"]["replicas"] == 1
    assert "kswarm-operator" not in replicas_managers(late)

    # A change of the pool reaches its ScaledObject; the pool made before KEDA switches from
    # its HPA to a ScaledObject at its next change.
    patch_pool(
        cp,
        "late",
        namespace,
        [{"op": "replace", "path": "/spec/autoscaling/targetWaitingPerReplica", "value": 0.5}],
    )
    wait_for(
        "the new threshold",
        lambda: (
            get(cp, "scaledobject", "pool-late", namespace)["spec"]["triggers"][0]["metadata"][
                "threshold"
            ]
            == "0.5"
        ),
        timeout=30,
    )
    patch_pool(
        cp,
        "early",
        namespace,
        [{"op": "replace", "path": "/spec/autoscaling/maxReplicas", "value": 5}],
    )
    wait_for(
        "the early pool's ScaledObject", lambda: find(cp, "scaledobject", "pool-early", namespace)
    )
    wait_for("its HPA to go", lambda: find(cp, "hpa", "pool-early", namespace) is None, timeout=30)
