"""ModelPool handlers: run the pool's servers, and say whether they are ready.

Three modes, chosen by the spec (the CRD allows exactly one):

* managed (``spec.replicas``): a vLLM Deployment and a Service (see ``deployments``), applied
  on create, on change and on operator start; their readiness comes from the Deployment's own
  status, followed by watching the Deployments the operator owns. With ``spec.autoscaling``,
  an HPA or a KEDA ScaledObject (see ``autoscalers``) sizes the Deployment instead.
* simulator (``spec.simulator``): the same with ``kswarm sim``.
* endpoint (``spec.endpoint``): nothing to run; the timer of ``endpoint_probes`` asks the
  server whether it serves the pool's model.

The pool index (``pool_index``) is how SwarmJobs learn which pools exist without asking the API
server: kopf fills it from its own watch of ModelPools. Every ModelPool event also asks the
publisher (``workerpools``) to rewrite the workers' pools document (and the Secret of their
API keys, read from each pool's ``spec.apiKeySecret`` as the probe reads it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import kopf

from kswarm.operator import autoscalers
from kswarm.operator import deployments as children
from kswarm.operator import status as job_status
from kswarm.operator.bodies import DeploymentSpec, DeploymentStatus, ModelPool, ModelPoolStatus
from kswarm.operator.kube import KubeError, KubeNotFound, KubeRefused, KubeRetryable
from kswarm.operator.runtime import Runtime, runtime_of

__all__ = [
    "GROUP",
    "PLURAL",
    "REPLICAS_MANAGER",
    "VERSION",
    "apply_pool",
    "deployment_changed",
    "index_pool",
    "pool_changed",
    "pool_status_from_deployment",
]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "modelpools"


def index_pool(
    namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """Index: (namespace, name) -> the pool's mode and last known status."""
    return {(namespace, name): {"mode": children.pool_mode(spec), "status": dict(status)}}


async def pool_changed(memo: kopf.Memo, **_: Any) -> None:
    """Any event of any ModelPool (deletions included): the workers' document may change."""
    publisher = runtime_of(memo).publisher
    if publisher is not None:
        publisher.poke()


async def apply_pool(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str,
    name: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    old: Mapping[str, Any] | None = None,
    **_: Any,
) -> None:
    """Create or update the Deployment and Service of a managed or simulator pool, and the
    autoscaler of an autoscaled one; remove what the pool no longer has."""
    rt = runtime_of(memo)
    pool = cast(ModelPool, body)  # checked by the API server against the CRD
    mode = children.pool_mode(spec)
    generation = meta.get("generation")
    objects = children.render_children(pool, image=rt.config.image)
    child = children.child_name(name)
    old_spec = (old or {}).get("spec") or {}
    had_children = bool(old_spec) and children.pool_mode(old_spec) != "endpoint"
    try:
        scaler = await _autoscaler(rt, pool) if children.autoscaled(spec) else None
        size = int(spec.get("replicas") or 0)
        handed = scaler is not None and await _hand_over_replicas(rt, namespace, child, size)
        for obj in objects:
            await rt.api.apply(obj)
        if scaler is not None:
            if not handed:  # a new Deployment: it starts at spec.replicas all the same
                await _hand_over_replicas(rt, namespace, child, size)
            await rt.api.apply(scaler)
        if objects or had_children:
            for unused in (autoscalers.HPA, autoscalers.SCALED_OBJECT):
                if scaler is None or scaler["kind"] != unused:
                    await rt.api.delete(unused, namespace, child)
        if not objects and had_children:
            for kind in ("Deployment", "Service"):
                await rt.api.delete(kind, namespace, child)
    except KubeRetryable as e:
        raise kopf.TemporaryError(str(e), delay=5) from e
    except KubeError as e:
        kopf.event(body, type="Warning", reason="ApplyFailed", message=str(e))
        raise kopf.PermanentError(str(e)) from e
    if objects:
        log.info(
            "pool applied namespace=%s name=%s mode=%s autoscaler=%s",
            namespace,
            name,
            mode,
            scaler["kind"] if scaler else "-",
        )
        if not status.get("phase"):
            patch.status.update(
                pool_status_from_deployment(
                    spec,
                    name,
                    namespace,
                    desired=int(objects[0]["spec"].get("replicas", spec.get("replicas", 1))),
                    ready=0,
                    old_conditions=None,
                    now=rt.now(),
                    generation=generation,
                )
            )
        else:
            patch.status["observedGeneration"] = generation


async def _autoscaler(rt: Runtime, pool: ModelPool) -> dict[str, Any]:
    """The autoscaler of an autoscaled pool: KEDA's ScaledObject where KEDA is installed (asked
    at every apply, so a pool applied after KEDA's arrival switches), else an HPA."""
    keda = await rt.api.crd_established(autoscalers.KEDA_CRD)
    return autoscalers.render_autoscaler(
        pool,
        kind=autoscalers.SCALED_OBJECT if keda else autoscalers.HPA,
        prometheus_url=rt.config.prometheus_url,
    )


REPLICAS_MANAGER = "kswarm-operator-replicas"
"""The field manager that hands an autoscaled Deployment's ``replicas`` over to its autoscaler."""


async def _hand_over_replicas(rt: Runtime, namespace: str, deployment: str, replicas: int) -> bool:
    """Let an autoscaler take a Deployment's ``replicas`` without a dip.

    The operator's own apply omits the field once a pool is autoscaled; had it been the only
    manager of the field, the API server would reset it to 1. So a second manager applies the
    current size first (Kubernetes' documented way to transfer ownership to an HPA), without
    force: once the autoscaler has set the field itself, the apply is a conflict and changes
    nothing. ``False`` when the Deployment does not exist yet.
    """
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment, "namespace": namespace},
        "spec": {"replicas": replicas},
    }
    try:
        await rt.api.apply(body, field_manager=REPLICAS_MANAGER, force=False)
    except KubeNotFound:
        return False
    except KubeRefused as e:
        if e.status == 409:  # the autoscaler holds the field: its size stands
            return True
        if e.status == 422:  # no such Deployment: an apply of the one field cannot create it
            return False
        raise
    return True


def pool_status_from_deployment(
    spec: Mapping[str, Any],
    name: str,
    namespace: str,
    *,
    desired: int,
    ready: int,
    old_conditions: Any,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The status of a managed or simulator pool from its Deployment's replica counts."""
    if desired == 0:
        phase, reason, message = "Pending", "ScaledToZero", "the pool has 0 replicas"
    elif ready == 0:
        phase, reason, message = "Pending", "ReplicasNotReady", f"0 of {desired} replicas ready"
    elif ready < desired:
        phase, reason, message = "Degraded", "ReplicasNotReady", f"{ready} of {desired} ready"
    else:
        phase, reason, message = "Ready", "ReplicasReady", f"{ready} of {desired} replicas ready"
    cond = {
        "type": "Ready",
        "status": "True" if phase == "Ready" else "False",
        "reason": reason,
        "message": message,
    }
    out: dict[str, Any] = {
        "phase": phase,
        "readyReplicas": ready,
        "endpoints": [children.service_url(name, namespace)] if ready else [],
        "conditions": job_status.set_conditions(
            old_conditions, [cond], now=now, generation=generation
        ),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def _owning_pool(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or ():
        if ref.get("kind") == "ModelPool" and str(ref.get("apiVersion", "")).startswith(GROUP):
            return str(ref["name"])
    return None


async def deployment_changed(
    type: str | None,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str,
    memo: kopf.Memo,
    pool_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """A Deployment we own changed: carry its ready replicas into the pool's status."""
    pool = _owning_pool(meta)
    if pool is None or (namespace, pool) not in pool_index:
        return
    rt = runtime_of(memo)
    deployment, observed = cast(DeploymentSpec, spec), cast(DeploymentStatus, status)
    known: Mapping[str, Any] = next(iter(pool_index[(namespace, pool)]), {})
    old = cast(ModelPoolStatus, dict(known.get("status") or {}))
    ready = 0 if type == "DELETED" else int(observed.get("readyReplicas") or 0)
    fresh = pool_status_from_deployment(
        {},
        pool,
        namespace,
        desired=int(deployment.get("replicas", 1) or 0),
        ready=ready,
        old_conditions=old.get("conditions"),
        now=rt.now(),
        generation=old.get("observedGeneration"),
    )
    delta = job_status.changed_fields(cast(Mapping[str, Any], old), fresh)
    if not delta:
        return
    try:
        await rt.api.patch_status(GROUP, VERSION, PLURAL, namespace, pool, delta)
    except KubeNotFound:
        return
    log.info(
        "pool readiness namespace=%s name=%s ready=%s phase=%s",
        namespace,
        pool,
        ready,
        fresh["phase"],
    )
