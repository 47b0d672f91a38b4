"""Endpoint pools: a ModelPool with ``spec.endpoint`` runs nothing, so the operator asks it.

A timer per endpoint pool asks the server ``GET /v1/models`` (what vLLM and ``kswarm sim``
answer), with the key of ``spec.apiKeySecret`` when the pool names one: Ready when the pool's
model is listed, Degraded when the server lists other models, Failed when it does not answer or
refuses. The status says what the server said; an Event marks each change of phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import httpx
import kopf

from kswarm.operator import status as job_status
from kswarm.operator.bodies import ModelPoolSpec
from kswarm.operator.kube import KubeError
from kswarm.operator.pools_document import DEFAULT_SECRET_KEY, base_url
from kswarm.operator.runtime import runtime_of

__all__ = ["ProbeResult", "pool_status_from_probe", "probe_endpoint", "probe_pool"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    models: tuple[str, ...]
    message: str
    http_status: int | None = None


async def probe_endpoint(
    endpoint: str,
    *,
    api_key: str | None = None,
    seconds: float = PROBE_TIMEOUT_SECONDS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ProbeResult:
    url = f"{base_url(endpoint)}/v1/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=seconds, transport=transport) as http:
            resp = await http.get(url, headers=headers)
    except httpx.HTTPError as e:
        return ProbeResult(False, (), f"GET {url} failed: {type(e).__name__}: {e}".strip(": "))
    if resp.status_code in (401, 403):
        hint = "" if api_key else "; name the key's Secret in spec.apiKeySecret"
        return ProbeResult(False, (), f"GET {url}: HTTP {resp.status_code}{hint}", resp.status_code)
    if resp.status_code != 200:
        return ProbeResult(False, (), f"GET {url}: HTTP {resp.status_code}", resp.status_code)
    try:
        data = resp.json().get("data", [])
        models = tuple(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))
    except (ValueError, AttributeError):
        return ProbeResult(False, (), f"GET {url}: not an OpenAI model list", 200)
    return ProbeResult(True, models, f"{url} serves {', '.join(models) or 'no model'}", 200)


def pool_status_from_probe(
    spec: ModelPoolSpec,
    probe: ProbeResult,
    *,
    old_conditions: Any,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The status of an endpoint pool after one probe."""
    model = str(spec.get("model", ""))
    endpoint = str(spec["endpoint"])
    if not probe.reachable:
        phase, ready, reason = "Failed", 0, "EndpointUnreachable"
        message = probe.message
    elif probe.models and model not in probe.models:
        phase, ready, reason = "Degraded", 0, "ModelNotServed"
        message = f"{probe.message}; not {model!r}"
    else:
        phase, ready, reason = "Ready", 1, "EndpointReachable"
        message = probe.message
    cond = {
        "type": "Ready",
        "status": "True" if phase == "Ready" else "False",
        "reason": reason,
        "message": message,
    }
    return {
        "phase": phase,
        "readyReplicas": ready,
        "endpoints": [base_url(endpoint)] if ready else [],
        "observedGeneration": generation,
        "conditions": job_status.set_conditions(
            old_conditions, [cond], now=now, generation=generation
        ),
    }


async def probe_pool(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str,
    name: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Timer of endpoint pools: probe the server and report what it said."""
    rt = runtime_of(memo)
    pool = cast(ModelPoolSpec, spec)  # checked by the API server against the CRD
    api_key = None
    secret = pool.get("apiKeySecret")
    if secret:
        try:
            api_key = await rt.api.read_secret_value(
                namespace, secret["name"], secret.get("key", DEFAULT_SECRET_KEY)
            )
            api_key = api_key.strip() or None  # as the workers read it (see workerpools)
        except (KubeError, UnicodeDecodeError) as e:
            log.warning("pool secret unreadable namespace=%s name=%s error=%s", namespace, name, e)
    probe = await probe_endpoint(pool["endpoint"], api_key=api_key)
    fresh = pool_status_from_probe(
        pool,
        probe,
        old_conditions=status.get("conditions"),
        now=rt.now(),
        generation=meta.get("generation"),
    )
    delta = job_status.changed_fields(dict(status), fresh)
    if delta:
        patch.status.update(delta)
        if delta.get("phase"):
            kind = "Normal" if fresh["phase"] == "Ready" else "Warning"
            kopf.event(body, type=kind, reason=f"Pool{fresh['phase']}", message=probe.message)
            log.info("pool probed namespace=%s name=%s phase=%s", namespace, name, fresh["phase"])
