"""A job's spans rebuilt from the ledger, for when no collector kept them.

Most laptops have no trace collector, and a collector's retention is shorter than the
ledger's. The ledger holds every model-call attempt (agent, step, start, latency, outcome),
every tool call (key, duration) and every agent (role, stage), which is exactly what the
critical-path algorithm reads from spans. So :func:`records_from_ledger` builds the same
:class:`~kswarm.telemetry.spans.SpanRecord` values the interceptors would have exported, with
synthetic ids (``agent:...``, ``chat:...``) and the job uid as trace id, and ``kswarm trace``
and the dashboard work with or without tracing.

Rows are read by attribute (the ORM objects of :mod:`kswarm.ledger.models`, from the async
repository or a synchronous session alike).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kswarm.telemetry import spans as attr
from kswarm.telemetry.critical_path import MAIN_ROLES
from kswarm.telemetry.spans import SpanRecord

__all__ = ["load_job_records", "records_from_ledger", "timestamp"]


def timestamp(value: datetime | None) -> float | None:
    """Epoch seconds of a ledger timestamp (SQLite hands back naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def records_from_ledger(
    job: Any, agents: Iterable[Any], model_calls: Iterable[Any], tool_calls: Iterable[Any]
) -> list[SpanRecord]:
    """Spans of one job from its ledger rows (``jobs``, ``agents``, ``model_calls``,
    ``tool_calls``)."""
    uid = str(job.uid)
    job_span = f"job:{uid}"
    out: list[SpanRecord] = []
    by_id = {a.id: a for a in agents if a.role != "template"}
    ends: list[float] = []

    for mc in model_calls:
        a = by_id.get(mc.agent_id)
        role = a.role if a is not None else None
        main = role in MAIN_ROLES
        start = timestamp(mc.started_at) or 0.0
        end = start + float(mc.latency_seconds or 0.0)
        ends.append(end)
        stage = mc.step if main else (a.stage if a is not None else None)
        out.append(
            SpanRecord(
                span_id=f"chat:{mc.agent_id}/{mc.step}/{mc.attempt}",
                parent_id=f"agent:{mc.agent_id}",
                name=f"chat {mc.model}",
                start=start,
                end=end,
                trace_id=uid,
                status="ok" if mc.status == "ok" else "error",
                attributes={
                    attr.OPERATION: "chat",
                    attr.REQUEST_MODEL: mc.model,
                    attr.POOL: mc.pool,
                    attr.JOB_UID: uid,
                    attr.AGENT_ID: mc.agent_id,
                    attr.AGENT_ROLE: role,
                    attr.STAGE: stage,
                    attr.STEP: mc.step,
                    attr.INPUT_TOKENS: mc.input_tokens,
                    attr.OUTPUT_TOKENS: mc.output_tokens,
                    "kswarm.replica": mc.replica,
                    "kswarm.attempt": mc.attempt,
                },
            )
        )

    for tc in tool_calls:
        # Tools that ran have a measured duration; control calls (spawn, finish) and refused
        # calls were decided without running and carry none or zero.
        finished = timestamp(tc.finished_at)
        if finished is None or tc.duration_seconds is None or tc.duration_seconds <= 0:
            continue
        end = finished
        ends.append(end)
        out.append(
            SpanRecord(
                span_id=f"tool:{tc.key}",
                parent_id=f"agent:{tc.agent_id}",
                name=f"execute_tool {tc.tool}",
                start=end - float(tc.duration_seconds),
                end=end,
                trace_id=uid,
                status="error" if tc.status in ("failed", "refused") else "ok",
                attributes={
                    attr.OPERATION: "execute_tool",
                    attr.TOOL_NAME: tc.tool,
                    attr.TOOL_CALL_ID: tc.key,
                    attr.JOB_UID: uid,
                    attr.AGENT_ID: tc.agent_id,
                    attr.STEP: tc.step,
                    attr.TOOL_INDEX: tc.index,
                },
            )
        )

    job_start = timestamp(job.started_at) or timestamp(job.created_at) or 0.0
    last = max(ends, default=job_start)
    for a in by_id.values():
        start = timestamp(a.started_at) or job_start
        main = a.role in MAIN_ROLES
        out.append(
            SpanRecord(
                span_id=f"agent:{a.id}",
                parent_id=f"agent:{a.parent_id}" if a.parent_id in by_id else job_span,
                name=f"invoke_agent {a.name}",
                start=start,
                end=timestamp(a.finished_at) or last,
                trace_id=uid,
                status="error" if a.status == "Failed" else "ok",
                attributes={
                    attr.OPERATION: "invoke_agent",
                    attr.AGENT_NAME: a.name,
                    attr.JOB_UID: uid,
                    attr.AGENT_ID: a.id,
                    attr.AGENT_ROLE: a.role,
                    attr.STAGE: None if main else a.stage,
                },
            )
        )
    out.append(
        SpanRecord(
            span_id=job_span,
            parent_id=None,
            name="invoke_workflow",
            start=job_start,
            end=timestamp(job.finished_at) or last,
            trace_id=uid,
            status="error" if job.phase == "Failed" else "ok",
            attributes={
                attr.OPERATION: "invoke_workflow",
                attr.JOB_UID: uid,
                attr.JOB_NAME: job.name,
                attr.JOB_NAMESPACE: job.namespace,
                attr.JOB_MODE: job.mode,
            },
        )
    )
    return out


async def load_job_records(ledger: Any, ref: str) -> tuple[Any, list[SpanRecord]]:
    """The job named ``ref`` (uid, name or ``namespace/name``) and its spans; ``(None, [])``
    when the ledger has no such job."""
    job = await ledger.find_job(ref)
    if job is None:
        return None, []
    agents = await ledger.list_agents(job.uid)
    calls = await ledger.list_model_calls(job.uid)
    tools = await ledger.list_tool_calls(job.uid)
    return job, records_from_ledger(job, agents, calls, tools)
