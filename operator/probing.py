"""Is an endpoint pool's server there, and does it serve the pool's model?

An endpoint ModelPool points at an OpenAI-compatible server the operator does not run. The
operator asks it ``GET /v1/models`` (what vLLM and ``kswarm sim`` answer) and turns the answer
into the pool's status: Ready when the model is listed, Degraded when the server answers but
lists other models, Failed when it does not answer or refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from kswarm.operator import status as job_status

__all__ = ["ProbeResult", "base_url", "pool_status_from_probe", "probe_endpoint"]

PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class ProbeResult:
    reachable: bool
    models: tuple[str, ...]
    message: str
    http_status: int | None = None


def base_url(endpoint: str) -> str:
    """``http://host:8000/v1/`` -> ``http://host:8000``: the form the kswarm client takes."""
    url = endpoint.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


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
    spec: Mapping[str, Any],
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
