"""The autoscaler of an autoscaled managed pool, as a plain manifest: an HPA or a KEDA
ScaledObject.

A managed ModelPool with ``spec.autoscaling: {minReplicas, maxReplicas,
targetWaitingPerReplica}`` scales with its queue: vLLM's ``vllm:num_requests_waiting`` (requests
waiting for a place in the running batch), averaged over the replicas, is held near the target.

* Without KEDA: a ``HorizontalPodAutoscaler`` (autoscaling/v2) with a ``Pods`` metric of that
  name. The HPA reads it from the custom metrics API, so the cluster needs an adapter that
  serves the pods' Prometheus metrics there (prometheus-adapter, for one).
* With KEDA (its ``scaledobjects.keda.sh`` CRD is installed): a ``ScaledObject`` with a
  ``prometheus`` trigger that sums the metric over the pool's pods, against the Prometheus of
  ``KSWARM_PROMETHEUS_URL``; KEDA then runs the HPA itself.

Either is named like the pool's Deployment, targets it, and is owned by the pool (deleting the
pool deletes it). The Deployment the operator applies then has no ``replicas``: the autoscaler
owns that field, and a value the operator applied would undo its every decision. Rendering is
pure; ``modelpools`` applies what comes out and removes the kind not in use.
"""

from __future__ import annotations

from typing import Any, Literal

from kswarm.operator import deployments as children
from kswarm.operator.bodies import ModelPool, ModelPoolSpec

__all__ = [
    "DEFAULT_PROMETHEUS_URL",
    "HPA",
    "KEDA_CRD",
    "METRIC",
    "SCALED_OBJECT",
    "AutoscalerKind",
    "pod_pattern",
    "quantity",
    "render_autoscaler",
]

METRIC = "vllm:num_requests_waiting"
"""vLLM's gauge of requests waiting for a place in the running batch, per server."""
KEDA_CRD = "scaledobjects.keda.sh"
"""The CRD whose presence says that KEDA is installed."""
AutoscalerKind = Literal["HorizontalPodAutoscaler", "ScaledObject"]
HPA: AutoscalerKind = "HorizontalPodAutoscaler"
SCALED_OBJECT: AutoscalerKind = "ScaledObject"
DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
"""Where a KEDA trigger asks for the metric (``KSWARM_PROMETHEUS_URL``): the Service that the
Prometheus operator makes for a Prometheus in namespace ``monitoring``."""
DEFAULT_MIN_REPLICAS = 1
DEFAULT_TARGET = 2.0
"""The CRD's defaults, for a spec that did not pass through the API server."""


def quantity(value: float) -> str:
    """A Kubernetes quantity for ``value``: ``2`` -> ``"2"``, ``0.5`` -> ``"500m"``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def pod_pattern(pool: str) -> str:
    """A regular expression matching the names of the pods of the pool's Deployment
    (``DEPLOYMENT-HASH-SUFFIX``) and of no other pool's, even one whose name starts the same."""
    return f"{children.child_name(pool)}-[a-z0-9]+-[a-z0-9]+"


def _bounds(spec: ModelPoolSpec) -> tuple[int, int, float]:
    scaling = spec["autoscaling"]
    low = int(scaling.get("minReplicas", DEFAULT_MIN_REPLICAS))
    return (
        low,
        int(scaling["maxReplicas"]),
        float(scaling.get("targetWaitingPerReplica", DEFAULT_TARGET)),
    )


def render_autoscaler(
    pool: ModelPool, *, kind: AutoscalerKind, prometheus_url: str = DEFAULT_PROMETHEUS_URL
) -> dict[str, Any]:
    """The autoscaler of ``kind`` for an autoscaled managed pool (see the module docstring)."""
    spec, meta = pool["spec"], pool["metadata"]
    name, namespace = str(meta["name"]), str(meta["namespace"])
    child = children.child_name(name)
    low, high, target = _bounds(spec)
    metadata = {
        "name": child,
        "namespace": namespace,
        "labels": children.labels(name, "vllm"),
        "ownerReferences": [children.owner_reference(pool)],
    }
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": child}
    if kind == HPA:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": METRIC},
                "target": {"type": "AverageValue", "averageValue": quantity(target)},
            },
        }
        return {
            "apiVersion": "autoscaling/v2",
            "kind": HPA,
            "metadata": metadata,
            "spec": {
                "scaleTargetRef": ref,
                "minReplicas": low,
                "maxReplicas": high,
                "metrics": [metric],
            },
        }
    query = f'sum({METRIC}{{namespace="{namespace}",pod=~"{pod_pattern(name)}"}})'
    trigger = {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": f"{target:g}"},
    }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": SCALED_OBJECT,
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": ref,
            "minReplicaCount": low,
            "maxReplicaCount": high,
            "triggers": [trigger],
        },
    }
