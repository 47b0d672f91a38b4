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

from kswarm.operator.pools_document import DEFAULT_KEYS_DIR, load_static_pools

if TYPE_CHECKING:
    from conftest import ControlPlane

OPERATOR = "system:serviceaccount:kswarm-system:kswarm-operator"
WORKER = "system:serviceaccount:kswarm-system:kswarm-worker"


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
    for name, command, image in (
        ("kswarm-operator", ["kswarm", "operator"], "ghcr.io/kswarm/kswarm:0.1.0"),
        ("kswarm-worker", ["kswarm", "worker"], "ghcr.io/kswarm/kswarm:0.1.0"),
        # The dashboard's image adds the dashboard extra (Streamlit) to the kswarm image.
        ("kswarm-dashboard", ["kswarm", "dashboard"], "ghcr.io/kswarm/kswarm-dashboard:0.1.0"),
    ):
        pod = deployments[name]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["image"] == image
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
    assert {"toolservers", "toolservers/status"} <= resources  # no finalizer: nothing to undo
    assert "secrets" not in resources and "*" not in resources
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    assert set(roles) == {"kswarm-pool-secrets", "kswarm-operator-pools"}
    for role in roles.values():  # Secrets and the pools ConfigMap: by name only
        assert all(rule.get("resourceNames") for rule in role["rules"])
    pools, keys = roles["kswarm-operator-pools"]["rules"]
    assert (pools["resources"], pools["resourceNames"]) == (
        ["configmaps"],
        ["kswarm-pools", "kswarm-tools"],
    )
    # The Secrets of the workers' API keys and tool tokens: written, never read back, and no
    # other Secret.
    assert (keys["resources"], keys["resourceNames"]) == (
        ["secrets"],
        ["kswarm-pool-keys", "kswarm-tool-keys"],
    )
    assert set(keys["verbs"]) == {"create", "patch"}
    assert roles["kswarm-operator-pools"]["metadata"]["namespace"] == "kswarm-system"


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
        pytest.param("patch", "horizontalpodautoscalers.autoscaling", "x", True, id="patch-hpas"),
        pytest.param("delete", "horizontalpodautoscalers.autoscaling", "x", True, id="delete-hpas"),
        pytest.param("list", "horizontalpodautoscalers.autoscaling", "x", False, id="no-hpa-list"),
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
            "get", "configmaps/answer-key", "default", True, id="get-answer-key-configmap"
        ),
        pytest.param("watch", "configmaps", "default", False, id="no-watching-configmaps"),
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


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        pytest.param("create", "scaledobjects", True, id="create-scaledobjects"),
        pytest.param("patch", "scaledobjects", True, id="patch-scaledobjects"),
        pytest.param("delete", "scaledobjects", True, id="delete-scaledobjects"),
        pytest.param("get", "scaledobjects", False, id="no-reading-scaledobjects"),
        pytest.param("create", "scaledjobs", False, id="no-scaledjobs"),
        pytest.param("create", "triggerauthentications", False, id="no-trigger-auth"),
    ],
)
def test_the_operator_may_manage_keda_scaled_objects_before_keda_is_installed(
    control_plane: ControlPlane, operator_identity: str, verb: str, resource: str, allowed: bool
) -> None:
    """Asked with a SubjectAccessReview: ``kubectl auth can-i`` cannot name the group of a
    resource type the server does not serve yet."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": operator_identity,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:kswarm-system"],
            "resourceAttributes": {
                "namespace": "x",
                "verb": verb,
                "group": "keda.sh",
                "resource": resource,
            },
        },
    }
    out = control_plane.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review))
    assert json.loads(out.stdout)["status"].get("allowed", False) is allowed


def test_the_worker_s_identity_reads_no_secret(
    control_plane: ControlPlane, operator_identity: str
) -> None:
    """The workers get the pools' keys from the kubelet (a Secret volume), not from the API."""
    for verb, resource in (("get", "secrets/kswarm-pool-keys"), ("list", "secrets")):
        res = control_plane.kubectl(
            "auth", "can-i", verb, resource, "-n", "kswarm-system", f"--as={WORKER}", check=False
        )
        assert res.stdout.strip() == "no", (verb, resource, res.stdout, res.stderr)


def test_the_workers_mount_the_pools_configmap_that_the_operator_writes(
    control_plane: ControlPlane, tmp_path: Any
) -> None:
    docs = rendered(control_plane)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    # The operator owns kswarm-pools: the base ships none, or `kubectl apply -k` would undo it.
    assert "kswarm-pools" not in config_maps

    def mounted(name: str, env: str, config_map: str) -> str:
        """The key of ``config_map`` that the file named by ``env`` in ``name`` reads."""
        pod = deployments[name]["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        path = next(e["value"] for e in c["env"] if e["name"] == env)
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in c["volumeMounts"]:
            source = volumes[mount["name"]].get("configMap", {})
            if source.get("name") == config_map and path.startswith(mount["mountPath"] + "/"):
                file = path[len(mount["mountPath"]) + 1 :]
                items = {i["path"]: i["key"] for i in source.get("items", [])}
                return str(items.get(file, file))
        raise AssertionError(f"{name}: {env}={path} is not a file of ConfigMap {config_map}")

    assert mounted("kswarm-worker", "KSWARM_POOLS_FILE", "kswarm-pools") == "pools.yaml"
    assert mounted("kswarm-worker", "KSWARM_TOOLS_FILE", "kswarm-tools") == "tools.yaml"
    assert "kswarm-tools" not in config_maps
    # The pools' API keys: the Secret the operator writes, where its apiKeyFile paths point.
    (op,) = deployments["kswarm-operator"]["spec"]["template"]["spec"]["containers"]
    keys_dir = next(e["value"] for e in op["env"] if e["name"] == "KSWARM_POOL_KEYS_DIR")
    assert keys_dir == DEFAULT_KEYS_DIR
    pod = deployments["kswarm-worker"]["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (keys,) = [m for m in worker["volumeMounts"] if m["mountPath"] == keys_dir]
    assert keys.get("readOnly") is True
    secret = volumes[keys["name"]]["secret"]
    assert (secret["secretName"], secret["optional"]) == ("kswarm-pool-keys", True)
    readable = secret.get("defaultMode", 0o644)
    assert readable & 0o004 or (readable & 0o040 and pod["securityContext"].get("fsGroup"))
    # Side by side, not nested: a read-only ConfigMap volume has no room for a mount point.
    for mount in worker["volumeMounts"]:
        if mount is not keys:
            assert not keys_dir.startswith(mount["mountPath"] + "/"), mount
    key = mounted("kswarm-operator", "KSWARM_STATIC_POOLS_FILE", "kswarm-static-pools")
    static = tmp_path / "static.yaml"
    static.write_text(config_maps["kswarm-static-pools"]["data"][key])
    assert [p["name"] for p in load_static_pools(str(static))] == ["default"]
    (c,) = deployments["kswarm-operator"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["KSWARM_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )
