"""deploy/ is a kustomize base the API server accepts, with least-privilege RBAC.

The operator fixture of the other tests already runs as the ``kswarm-operator`` ServiceAccount
bound to this RBAC, so missing verbs fail those tests; here the RBAC is checked from the other
side: what it must not allow.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from operator_support import DEPLOY, apply_operator_identity

if TYPE_CHECKING:
    from conftest import ControlPlane

OPERATOR = "system:serviceaccount:kswarm-system:kswarm-operator"


def rendered(cp: ControlPlane) -> list[dict[str, Any]]:
    out = cp.kubectl("kustomize", str(DEPLOY)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_base_passes_a_server_side_dry_run(control_plane: ControlPlane) -> None:
    # The API server cannot dry-run objects into a namespace it has only dry-run created.
    control_plane.kubectl("apply", "-f", str(DEPLOY / "namespace.yaml"))
    out = control_plane.kubectl("apply", "-k", str(DEPLOY), "--dry-run=server").stdout
    for obj in (
        "deployment.apps/kswarm-operator",
        "deployment.apps/kswarm-worker",
        "deployment.apps/kswarm-dashboard",
        "clusterrole.rbac.authorization.k8s.io/kswarm-operator",
        "serviceaccount/kswarm-operator",
    ):
        assert obj in out


def test_the_components_run_the_kswarm_image_with_the_database_url_from_a_secret(
    control_plane: ControlPlane,
) -> None:
    deployments = {
        d["metadata"]["name"]: d for d in rendered(control_plane) if d["kind"] == "Deployment"
    }
    for name, command in (
        ("kswarm-operator", ["kswarm", "operator"]),
        ("kswarm-worker", ["kswarm", "worker"]),
        ("kswarm-dashboard", ["kswarm", "dashboard"]),
    ):
        pod = deployments[name]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"] == "ghcr.io/kswarm/kswarm:0.1.0"
        assert c["command"] == command
        env = {e["name"]: e for e in c["env"]}
        assert env["KSWARM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kswarm-database"
        assert pod["serviceAccountName"] == name
    assert deployments["kswarm-operator"]["spec"]["strategy"]["type"] == "Recreate"


def test_the_operator_role_names_status_and_finalizers_and_no_secrets(
    control_plane: ControlPlane,
) -> None:
    docs = rendered(control_plane)
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    for name in ("swarmjobs", "modelpools"):
        assert {name, f"{name}/status", f"{name}/finalizers"} <= resources
    assert "secrets" not in resources and "*" not in resources
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    (secrets,) = [d for d in docs if d["kind"] == "Role"]
    assert all(rule.get("resourceNames") for rule in secrets["rules"])


@pytest.fixture(scope="module")
def operator_identity(control_plane: ControlPlane) -> str:
    """The operator's ServiceAccount and RBAC from deploy/, applied for real."""
    apply_operator_identity(control_plane.kubectl)
    return OPERATOR


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "allowed"),
    [
        pytest.param("patch", "swarmjobs.kswarm.dev:status", "default", True, id="patch-status"),
        pytest.param("update", "swarmjobs.kswarm.dev", "default", False, id="no-updating-specs"),
        pytest.param("update", "modelpools.kswarm.dev:finalizers", "x", True, id="finalizers"),
        pytest.param("create", "deployments.apps", "x", True, id="create-deployments"),
        pytest.param("create", "events", "x", True, id="create-events"),
        pytest.param("list", "secrets", "default", False, id="no-listing-secrets"),
        pytest.param("get", "secrets/kswarm-database", "kswarm-system", False, id="no-db-secret"),
        pytest.param("get", "secrets/model-api-key", "default", True, id="named-pool-secret"),
        pytest.param("delete", "swarmjobs.kswarm.dev", "default", False, id="no-deleting-jobs"),
        pytest.param("create", "pods", "default", False, id="no-pods"),
    ],
)
def test_the_operator_may_do_what_it_needs_and_nothing_else(
    control_plane: ControlPlane,
    operator_identity: str,
    verb: str,
    resource: str,
    namespace: str,
    allowed: bool,
) -> None:
    resource, _, subresource = resource.partition(":")
    extra = [f"--subresource={subresource}"] if subresource else []
    res = control_plane.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        *extra,
        "-n",
        namespace,
        f"--as={operator_identity}",
        check=False,
    )
    assert res.stdout.strip() == ("yes" if allowed else "no"), json.dumps(
        [verb, resource, subresource, res.stdout, res.stderr]
    )
