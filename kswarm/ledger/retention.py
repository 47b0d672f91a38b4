"""Retention and export: how the ledger forgets old jobs and hands trajectories to others.

The ledger keeps every message, model call and tool call of every job; on a long-lived cluster
that grows without bound. :func:`prune` deletes jobs that finished long enough ago, with every
row that belongs to them, in one transaction and with explicit deletes (SQLite only cascades
when its ``foreign_keys`` pragma is on). :func:`export_trajectories` turns one job into one
JSON-ready record per agent, the shape that trajectory datasets and offline evaluation read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, OperationalError

from kswarm.errors import LedgerError, LedgerUnavailable, SpecError
from kswarm.ledger import models
from kswarm.ledger.repository import Ledger, utcnow

__all__ = ["export_trajectories", "parse_age", "prune"]

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_AGE = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")

# Children first, so that no foreign key ever points at a deleted job.
_CHILDREN: tuple[Any, ...] = (
    models.ToolCall,
    models.ModelCall,
    models.Message,
    models.Stage,
    models.Agent,
)


def parse_age(value: str, *, option: str = "--older-than") -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``45s`` as a :class:`timedelta`.

    Raises :class:`SpecError` naming ``option`` and the bad value.
    """
    m = _AGE.match(value)
    if m is None:
        raise SpecError(
            option,
            f"not a duration: {value!r}; write a whole number and a unit: 30d, 12h, 90m, 45s",
        )
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


async def prune(ledger: Ledger, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete jobs that finished before ``now - older_than``, with all their rows.

    Jobs still running (no ``finished_at``) are never deleted. Returns the number of jobs
    deleted.
    """
    cutoff = (now or utcnow()) - older_than
    Job = models.Job
    doomed = select(Job.uid).where(Job.finished_at.is_not(None), Job.finished_at < cutoff)
    await ledger.flush()  # write-behind rows of those jobs must not land after the delete
    try:
        async with ledger.engine.begin() as conn:
            for table in _CHILDREN:
                await conn.execute(delete(table).where(table.job_uid.in_(doomed)))
            deleted = await conn.execute(delete(Job).where(Job.uid.in_(doomed)).returning(Job.uid))
            count = len(deleted.all())
    except (OperationalError, OSError) as e:
        raise LedgerUnavailable(ledger.masked_url, _reason(e)) from e
    except DBAPIError as e:
        raise LedgerError(f"ledger database {ledger.masked_url}: prune failed: {_reason(e)}") from e
    return count


async def export_trajectories(ledger: Ledger, job_uid: str) -> AsyncIterator[dict[str, Any]]:
    """One JSON-ready record per agent of job ``job_uid``, the orchestrator first.

    Each record holds the job, the agent, its messages in order, its tool calls and model
    calls, its token totals and timings. Datetimes are ISO 8601 strings in UTC.
    """
    await ledger.flush()
    job = await ledger.get_job(job_uid)
    if job is None:
        raise LedgerError(f"no job {job_uid!r} in ledger {ledger.masked_url}")
    agents = await ledger.list_agents(job_uid)
    tools_by_agent: dict[str, list[models.ToolCall]] = defaultdict(list)
    for tc in await ledger.list_tool_calls(job_uid):
        tools_by_agent[tc.agent_id].append(tc)
    models_by_agent: dict[str, list[models.ModelCall]] = defaultdict(list)
    for mc in await ledger.list_model_calls(job_uid):
        models_by_agent[mc.agent_id].append(mc)
    job_record = _job(job)
    for agent in sorted(agents, key=_agent_order):
        calls = models_by_agent.get(agent.id, [])
        yield {
            "job": job_record,
            "agent": _agent(agent),
            "messages": await ledger.get_messages(agent.id),
            "tool_calls": _tool_calls(tools_by_agent.get(agent.id, [])),
            "model_calls": _model_calls(calls),
            "tokens": {
                "input": sum(c.input_tokens for c in calls),
                "output": sum(c.output_tokens for c in calls),
            },
            "timings": {
                "started_at": _iso(agent.started_at),
                "finished_at": _iso(agent.finished_at),
            },
        }


def _agent_order(agent: models.Agent) -> tuple[int, int, str]:
    return (0 if agent.parent_id is None else 1, agent.stage or 0, agent.id)


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands back naive datetimes, which the ledger wrote in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _job(job: models.Job) -> dict[str, Any]:
    return {
        "uid": job.uid,
        "namespace": job.namespace,
        "name": job.name,
        "mode": job.mode,
        "phase": job.phase,
        "reason": job.reason,
        "critical_steps": job.critical_steps,
        "total_steps": job.total_steps,
        "speedup": job.speedup,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _agent(agent: models.Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "parent_id": agent.parent_id,
        "role": agent.role,
        "name": agent.name,
        "task": agent.task,
        "status": agent.status,
        "steps": agent.steps,
        "stage": agent.stage,
        "answer": agent.answer,
        "error": agent.error,
    }


def _tool_calls(calls: Sequence[models.ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "step": c.step,
            "index": c.index,
            "tool": c.tool,
            "arguments": c.arguments,
            "result": c.result,
            "status": c.status,
            "error": c.error,
            "attempts": c.attempts,
            "deduplicated": c.deduplicated,
            "duration_seconds": c.duration_seconds,
            "server": c.server,
            "side_effects": c.side_effects,
            "approval": c.approval,
        }
        for c in sorted(calls, key=lambda c: (c.step, c.index))
    ]


def _model_calls(calls: Sequence[models.ModelCall]) -> list[dict[str, Any]]:
    return [
        {
            "step": c.step,
            "attempt": c.attempt,
            "pool": c.pool,
            "replica": c.replica,
            "model": c.model,
            "status": c.status,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "ttft_seconds": c.ttft_seconds,
            "latency_seconds": c.latency_seconds,
        }
        for c in sorted(calls, key=lambda c: (c.step, c.attempt))
    ]


def _reason(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    lines = str(orig if orig is not None else e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
