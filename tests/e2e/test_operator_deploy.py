"""deploy/ is a kustomize base the API server accepts, with least-privilege RBAC.

The operator fixture of the other tests already runs as the ``kswarm-operator`` ServiceAccount
bound to this RBAC, so missing verbs fail those tests; here the RBAC is checked from the other
side: what it must not allow.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from operator_support import DEPLOY, apply_operator_identity

if TYPE_CHECKING:
    from conftest import ControlPlane

OPERATOR = "system:serviceaccount:kswarm-system:kswarm-operator"
WORKER = "system:serviceaccount:kswarm-system:kswarm-worker"


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
        pytest.param(
            "patch", "configmaps/kswarm-pools", "kswarm-system", True, id="patch-pools-configmap"
        ),
        pytest.param(
            "create", "configmaps/kswarm-pools", "kswarm-system", True, id="create-pools-configmap"
        ),
        pytest.param(
            "patch", "configmaps/kswarm-config", "kswarm-system", False, id="no-other-configmap"
        ),
        pytest.param("patch", "configmaps/kswarm-pools", "default", False, id="no-pools-elsewhere"),
        pytest.param("list", "configmaps", "kswarm-system", False, id="no-listing-configmaps"),
        pytest.param(
            "create", "secrets/kswarm-pool-keys", "kswarm-system", True, id="create-pool-keys"
        ),
        pytest.param(
            "patch", "secrets/kswarm-pool-keys", "kswarm-system", True, id="patch-pool-keys"
        ),
        pytest.param(
            "get", "secrets/kswarm-pool-keys", "kswarm-system", False, id="no-reading-pool-keys"
        ),
        pytest.param("patch", "secrets/kswarm-database", "kswarm-system", False, id="no-db-write"),
        pytest.param("patch", "secrets/kswarm-pool-keys", "default", False, id="no-keys-elsewhere"),
        pytest.param("list", "secrets", "kswarm-system", False, id="no-listing-own-secrets"),
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


def test_the_worker_s_identity_reads_no_secret(
    control_plane: ControlPlane, operator_identity: str
) -> None:
    """The workers get the pools' keys from the kubelet (a Secret volume), not from the API."""
    for verb, resource in (("get", "secrets/kswarm-pool-keys"), ("list", "secrets")):
        res = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", "kswarm-system", f"--as={WORKER}", check=False
        )
        assert res.stdout.strip() == "no", (verb, resource, res.stdout, res.stderr)
