"""The Helm chart charts/kswarm: lint, the same objects as deploy/, a real install and uninstall.

Helm is built from its Go module by ``hack/helm.sh`` (cached). With default values the chart must
render what ``kubectl kustomize deploy/`` renders, so the two cannot drift apart. The install
runs against a control plane of this module's own (the session's has deploy/'s RBAC applied,
whose names the release would clash with): every object passes the API server's validation.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster_support import CRDS, REPO, Kube, built
from cluster_support import own_control_plane as own_control_plane_of

CHART = REPO / "charts" / "kswarm"
DEPLOY = REPO / "deploy"
HELM_SH = REPO / "hack" / "helm.sh"
BUILD_TIMEOUT_S = int(os.environ.get("KSWARM_HELM_BUILD_TIMEOUT", "3600"))
HELM_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")
"""Labels only the chart sets (Helm's conventions); the comparison leaves them out."""

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 600)


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The helm command line (built now unless cached), with its state in a temporary folder."""
    binary = built(HELM_SH, BUILD_TIMEOUT_S)
    home = tmp_path_factory.mktemp("helm-home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"):
            mp.setenv(var, str(home / var.lower()))
        yield [binary]


def run(cmd: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def normalized(obj: dict[str, Any], *, from_helm: bool) -> dict[str, Any]:
    """The object with what legitimately differs taken out: Helm's own labels; the version
    label kustomize puts on the CRDs (Helm installs crds/ verbatim); the static pools document
    compared as data, not as text."""
    obj = json.loads(json.dumps(obj))
    labels = obj["metadata"].get("labels", {})
    for label in HELM_LABELS if from_helm else ():
        labels.pop(label, None)
    if obj["kind"] == "CustomResourceDefinition":
        labels.pop("app.kubernetes.io/version", None)
    if not labels:
        obj["metadata"].pop("labels", None)
    if obj["kind"] == "ConfigMap" and "pools.yaml" in obj.get("data", {}):
        obj["data"]["pools.yaml"] = yaml.safe_load(obj["data"]["pools.yaml"])
    return dict(obj)


def template(helm: list[str], *args: str) -> list[dict[str, Any]]:
    out = run([*helm, "template", "kswarm", str(CHART), "-n", "kswarm-system", *args]).stdout
    return docs(out)


def test_helm_lint_strict_passes(helm: list[str]) -> None:
    done = run([*helm, "lint", "--strict", str(CHART)])
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_the_chart_ships_the_crds_of_crds_byte_for_byte() -> None:
    listed = yaml.safe_load((CRDS / "kustomization.yaml").read_text())["resources"]
    shipped = sorted(p.name for p in (CHART / "crds").iterdir())
    assert shipped == sorted(listed)
    for name in listed:
        assert (CHART / "crds" / name).read_bytes() == (CRDS / name).read_bytes()


def test_default_values_render_the_same_objects_as_kustomize_deploy(
    helm: list[str], tmp_path: Path
) -> None:
    kubectl = Kube(tmp_path / "unused-kubeconfig", _kubectl())
    kustomized = {
        key(o): normalized(o, from_helm=False)
        for o in docs(kubectl.kubectl("kustomize", str(DEPLOY)).stdout)
    }
    rendered = {key(o): normalized(o, from_helm=True) for o in template(helm, "--include-crds")}
    assert sorted(rendered) == sorted(kustomized)
    for k, want in kustomized.items():
        assert rendered[k] == want, f"{k} differs between the chart and deploy/"


def test_values_change_what_they_name(helm: list[str]) -> None:
    objs = {
        key(o): o
        for o in template(
            helm,
            "--set", "image.repository=registry.example/kswarm,image.tag=9.9.9",
            "--set", "worker.replicas=5,worker.metricsPort=9300",
            "--set", "dashboard.enabled=false,simulator.enabled=false",
            "--set", "createNamespace=false,database.secretName=ledger",
            "--set", "operator.watchNamespaces={team-a,team-b}",
            "--set-json", 'staticPools=[{"name":"big","model":"m","replicas":["http://v:8000"]}]',
        )
    }  # fmt: skip
    kinds = {k[0] for k in objs}
    assert "Namespace" not in kinds
    assert ("Deployment", "kswarm-system", "kswarm-dashboard") not in objs
    assert ("Deployment", "kswarm-system", "kswarm-sim") not in objs
    worker = objs[("Deployment", "kswarm-system", "kswarm-worker")]["spec"]
    assert worker["replicas"] == 5
    (c,) = worker["template"]["spec"]["containers"]
    assert c["image"] == "registry.example/kswarm:9.9.9"
    env = {e["name"]: e for e in c["env"]}
    assert env["KSWARM_METRICS_PORT"]["value"] == "9300"
    assert env["KSWARM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "ledger"
    op = objs[("Deployment", "kswarm-system", "kswarm-operator")]["spec"]["template"]["spec"]
    op_env = {e["name"]: e.get("value") for e in op["containers"][0]["env"]}
    assert op_env["KSWARM_WATCH_NAMESPACES"] == "team-a,team-b"
    assert op_env["KSWARM_STATIC_POOLS"] == "big"
    static = objs[("ConfigMap", "kswarm-system", "kswarm-static-pools")]["data"]["pools.yaml"]
    assert yaml.safe_load(static) == {
        "pools": [{"name": "big", "model": "m", "replicas": ["http://v:8000"]}]
    }


def test_the_dashboard_runs_its_own_image_with_the_release_tag(helm: list[str]) -> None:
    """The dashboard's image is the kswarm image plus the dashboard extra: its own repository,
    and the tag of ``image.tag`` unless ``dashboard.image.tag`` names one."""

    def containers(*sets: str) -> dict[str, dict[str, Any]]:
        return {
            o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]
            for o in template(helm, *[a for s in sets for a in ("--set", s)])
            if o["kind"] == "Deployment"
        }

    def images(*sets: str) -> dict[str, str]:
        return {name: c["image"] for name, c in containers(*sets).items()}

    default = images()
    assert default["kswarm-dashboard"] == "ghcr.io/kswarm/kswarm-dashboard:0.1.0"
    assert default["kswarm-operator"] == default["kswarm-worker"] == "ghcr.io/kswarm/kswarm:0.1.0"
    tagged = images("image.repository=registry.example/kswarm,image.tag=9.9.9")
    assert tagged["kswarm-dashboard"] == "ghcr.io/kswarm/kswarm-dashboard:9.9.9"
    assert tagged["kswarm-worker"] == "registry.example/kswarm:9.9.9"
    own = images(
        "image.tag=9.9.9,image.pullPolicy=Always",
        "dashboard.image.repository=registry.example/dash,dashboard.image.tag=1.2.3",
    )
    assert own["kswarm-dashboard"] == "registry.example/dash:1.2.3"
    assert own["kswarm-worker"] == "ghcr.io/kswarm/kswarm:9.9.9"
    pulled = containers("image.pullPolicy=Always")
    assert pulled["kswarm-dashboard"]["imagePullPolicy"] == "Always"
    assert "imagePullPolicy" not in containers()["kswarm-dashboard"]


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("worker.replicas=-1", "/worker/replicas"),
        ("worker.replica=2", "'replica'"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("dashboard.image.repository=", "/dashboard/image/repository"),
        ("temporal.address=no-port", "/temporal/address"),
        ("poolSecrets[0].namespace=team", "secretNames"),
    ],
)
def test_a_bad_value_fails_naming_the_field(helm: list[str], setting: str, field: str) -> None:
    done = run([*helm, "template", "kswarm", str(CHART), "--set", setting], check=False)
    assert done.returncode != 0
    assert field in done.stderr, done.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    with own_control_plane_of(tmp_path_factory.mktemp("testcp-chart")) as kube:
        yield kube


KINDS = (
    "namespaces,serviceaccounts,configmaps,services,deployments,roles,rolebindings,"
    "clusterroles,clusterrolebindings,customresourcedefinitions"
)


def kswarm_objects(kube: Kube) -> set[tuple[str, str, str]]:
    out = kube.kubectl("get", KINDS, "-A", "-l", "app.kubernetes.io/part-of=kswarm", "-o", "json")
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in json.loads(out.stdout)["items"]
    }


def test_helm_install_succeeds_and_uninstall_leaves_only_the_crds(
    helm: list[str], cluster: Kube
) -> None:
    # The namespace exists first, as with `helm install --create-namespace` (the test control
    # plane has no namespace controller, so a namespace it deletes would never go away).
    cluster.kubectl("create", "namespace", "kswarm-system")
    kube = ["--kubeconfig", str(cluster.kubeconfig)]
    bad = run(
        [*helm, "install", "kswarm", str(CHART), "-n", "kswarm-system", *kube,
         "--set", "worker.replicas=two"],
        check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "/worker/replicas" in bad.stderr
    done = run(
        [*helm, "install", "kswarm", str(CHART), "-n", "kswarm-system", *kube,
         "--set", "createNamespace=false"]
    )  # fmt: skip
    assert "STATUS: deployed" in done.stdout
    assert "kubectl -n demo apply -f examples/quickstart.yaml" in done.stdout  # NOTES.txt
    installed = kswarm_objects(cluster)
    for obj in (
        ("Deployment", "kswarm-system", "kswarm-operator"),
        ("Deployment", "kswarm-system", "kswarm-worker"),
        ("Deployment", "kswarm-system", "kswarm-dashboard"),
        ("Deployment", "kswarm-system", "kswarm-sim"),
        ("ClusterRole", "", "kswarm-operator"),
        ("Role", "default", "kswarm-pool-secrets"),
        ("ConfigMap", "kswarm-system", "kswarm-static-pools"),
    ):
        assert obj in installed
    run([*helm, "uninstall", "kswarm", "-n", "kswarm-system", *kube])
    left = kswarm_objects(cluster)
    assert {k for k, _, _ in left} == {"CustomResourceDefinition"}, left
    assert len(left) == len(list((REPO / "charts" / "kswarm" / "crds").glob("*.yaml")))


def _kubectl() -> str:
    import sys

    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.exists() else "kubectl"
