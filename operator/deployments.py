"""The Deployment and Service behind a managed or simulated ModelPool, as plain manifests.

A ModelPool with ``spec.replicas`` runs vLLM's OpenAI-compatible server (``vllm serve MODEL
--enable-prefix-caching --enable-auto-tool-choice --tool-call-parser ...``); one with
``spec.simulator`` runs ``kswarm sim`` from the kswarm image, for clusters without GPUs. With
``spec.apiKeySecret`` either server requires that key (read from the Secret into its env). Both
get a ClusterIP Service on port 8000 and owner references to the pool, so deleting the pool
deletes them. An autoscaled pool's Deployment has no ``replicas``: its autoscaler (see
``autoscalers``) owns that field, and an applied value would fight it. Rendering is pure: the
handlers apply what comes out (server-side apply), and the tests read it back from the API
server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from kswarm.llm import vllm
from kswarm.llm.vllm import tool_call_parser
from kswarm.operator.bodies import ModelPool, ModelPoolSpec, OwnerReference, PoolMode

__all__ = [
    "LABEL_MANAGED_BY",
    "LABEL_POOL",
    "MANAGED_BY",
    "PORT",
    "autoscaled",
    "child_name",
    "labels",
    "owner_reference",
    "pool_mode",
    "render_children",
    "service_url",
    "tool_call_parser",
]

PORT = 8000
LABEL_POOL = "kswarm.dev/modelpool"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kswarm-operator"


def pool_mode(spec: Mapping[str, Any]) -> PoolMode:
    """``managed`` (spec.replicas), ``simulator`` or ``endpoint``, as the CRD's rules allow."""
    if "replicas" in spec:
        return "managed"
    if "simulator" in spec:
        return "simulator"
    return "endpoint"


def autoscaled(spec: Mapping[str, Any]) -> bool:
    """A managed pool with ``spec.autoscaling``: an autoscaler, not the operator, sizes it."""
    return pool_mode(spec) == "managed" and isinstance(spec.get("autoscaling"), Mapping)


def _short(text: str, limit: int = 63) -> str:
    """``text`` if it fits a DNS label or label value, else a prefix plus a hash."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{text[: limit - 9].rstrip('-.')}-{digest}"


def child_name(pool: str) -> str:
    """Name of the pool's Deployment and Service: a DNS label of at most 63 characters."""
    return _short(f"pool-{pool}")


def service_url(pool: str, namespace: str) -> str:
    return f"http://{child_name(pool)}.{namespace}.svc:{PORT}"


def labels(pool: str, app: str) -> dict[str, str]:
    """The labels of every object a pool's children carry (its Deployment, Service, autoscaler)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": _short(pool),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "kswarm",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_POOL: _short(pool),
    }


def owner_reference(pool: ModelPool) -> OwnerReference:
    """The pool as the controlling owner of a child: deleting the pool deletes the child."""
    meta = pool["metadata"]
    return {
        "apiVersion": pool.get("apiVersion", "kswarm.dev/v1alpha1"),
        "kind": pool.get("kind", "ModelPool"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _vllm_container(spec: ModelPoolSpec) -> dict[str, Any]:
    model = str(spec["model"])
    extra: Sequence[str] = list(spec.get("vllmArgs") or [])
    container: dict[str, Any] = {
        "name": "vllm",
        "image": spec.get("image") or "vllm/vllm-openai:latest",
        "command": ["vllm", "serve", model],
        "args": vllm.serve_arguments(model, host="0.0.0.0", port=PORT, extra=extra),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": dict(spec.get("resources") or {"limits": {"nvidia.com/gpu": 1}}),
        # Loading weights can take many minutes: the startup probe allows 30 of them before
        # the liveness probe takes over.
        "startupProbe": _probe("/health", 10, 180),
        "readinessProbe": _probe("/health", 5, 3),
        "livenessProbe": _probe("/health", 15, 4),
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    container.update(_api_key_env(spec, "VLLM_API_KEY"))
    return container


def _api_key_env(spec: ModelPoolSpec, variable: str) -> dict[str, Any]:
    """The key of ``spec.apiKeySecret`` in ``variable``, where vLLM (``VLLM_API_KEY``) and
    ``kswarm sim`` (``KSWARM_SIM_API_KEY``) take the key they then require."""
    secret = spec.get("apiKeySecret")
    if not secret:
        return {}
    ref = {"name": secret["name"], "key": secret.get("key", "api-key")}
    return {"env": [{"name": variable, "valueFrom": {"secretKeyRef": ref}}]}


def _sim_container(spec: ModelPoolSpec, image: str) -> dict[str, Any]:
    sim = spec.get("simulator") or {}
    args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--model",
        str(spec["model"]),
        "--max-num-seqs",
        str(sim.get("maxNumSeqs", 256)),
        "--time-scale",
        f"{float(sim.get('timeScale', 1)):g}",
    ]
    if "seed" in sim:
        args += ["--seed", str(sim["seed"])]
    return {
        "name": "sim",
        "image": image,
        "command": ["kswarm", "sim"],
        "args": args,
        **_api_key_env(spec, "KSWARM_SIM_API_KEY"),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "startupProbe": _probe("/health", 2, 30),
        "readinessProbe": _probe("/health", 5, 3),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def render_children(pool: ModelPool, *, image: str) -> list[dict[str, Any]]:
    """The Deployment and the Service of a managed or simulator pool (``[]`` for endpoints)."""
    spec = pool["spec"]
    mode = pool_mode(spec)
    if mode == "endpoint":
        return []
    meta = pool["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    app = "vllm" if mode == "managed" else "kswarm-sim"
    pod_labels = labels(name, app)
    child = child_name(name)
    owner = [owner_reference(pool)]
    if mode == "managed":
        replicas: int | None = None if autoscaled(spec) else int(spec["replicas"])
        pod_spec: dict[str, Any] = {
            "containers": [_vllm_container(spec)],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
        }
    else:
        replicas = int((spec.get("simulator") or {}).get("replicas", 1))
        pod_spec = {
            "containers": [_sim_container(spec, image)],
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        }
    pod_spec["automountServiceAccountToken"] = False
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": {LABEL_POOL: pod_labels[LABEL_POOL]}},
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if replicas is not None:  # an autoscaled pool's replicas are the autoscaler's field
        deployment_spec = {"replicas": replicas, **deployment_spec}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": pod_labels,
            "ownerReferences": owner,
        },
        "spec": deployment_spec,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": pod_labels,
            "ownerReferences": owner,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_POOL: pod_labels[LABEL_POOL]},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]
