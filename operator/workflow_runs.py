"""The operator's side of Temporal: start a job's workflow once, watch it, cancel it.

A SwarmJob maps to exactly one workflow, ``swarmjob-<metadata.uid>``. Starting is idempotent:
the id is rejected while a run is open or after one closed, and that rejection is how a second
start (an operator restart, a retried handler) learns that the job already runs. Nothing here
touches Kubernetes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from kswarm.ledger import Ledger
from kswarm.workflows import (
    TASK_QUEUE,
    JobStatus,
    RolloutInput,
    SwarmJobInput,
    SwarmJobResult,
    SwarmWorkflow,
)

__all__ = [
    "Closed",
    "Started",
    "cancel_and_wait",
    "closed_result",
    "describe",
    "handle_for",
    "start_once",
    "wait_closed",
    "workflow_id",
]

log = logging.getLogger(__name__)

OPEN = WorkflowExecutionStatus.RUNNING
_ENDINGS: dict[WorkflowExecutionStatus | None, tuple[str, str]] = {
    WorkflowExecutionStatus.CANCELED: ("Cancelled", "Cancelled: the job was cancelled"),
    WorkflowExecutionStatus.TERMINATED: ("Failed", "Terminated: the workflow was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: ("Failed", "TimedOut: the workflow timed out"),
}
"""Phase and reason of a run that closed without a result."""


def workflow_id(uid: str) -> str:
    return f"swarmjob-{uid}"


def handle_for(
    client: Client, wid: str, run_id: str | None = None
) -> WorkflowHandle[Any, SwarmJobResult]:
    """A handle whose ``result()`` is a :class:`SwarmJobResult`, not a plain dict."""
    return client.get_workflow_handle_for(SwarmWorkflow.run, wid, run_id=run_id)


@dataclass(frozen=True)
class Started:
    workflow_id: str
    run_id: str | None
    start_time: datetime | None
    created: bool
    """``True`` when this call started the run; ``False`` when it already existed."""


async def start_once(
    client: Client, inp: SwarmJobInput | RolloutInput, *, workflow: Any = SwarmWorkflow.run
) -> Started:
    """Start the job's workflow (``workflow``: a job's by default, or a rollout group's) unless
    a run of its id exists (open or closed)."""
    try:
        handle = await client.start_workflow(
            workflow,
            inp,
            id=inp.workflow_id,
            task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        desc = await client.get_workflow_handle(inp.workflow_id).describe()
        log.info("workflow exists workflow_id=%s run_id=%s", inp.workflow_id, desc.run_id)
        return Started(inp.workflow_id, desc.run_id, desc.start_time, created=False)
    log.info("workflow started workflow_id=%s run_id=%s", inp.workflow_id, handle.result_run_id)
    return Started(inp.workflow_id, handle.result_run_id, None, created=True)


async def describe(client: Client, wid: str) -> WorkflowExecutionDescription | None:
    """The workflow's description, or ``None`` when no run of that id exists."""
    try:
        return await client.get_workflow_handle(wid).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


@dataclass(frozen=True)
class Closed:
    """The run has closed; ``result`` is its return value when it completed."""

    result: SwarmJobResult | None


async def wait_closed(
    handle: WorkflowHandle[Any, SwarmJobResult], seconds: float | None
) -> Closed | None:
    """Wait up to ``seconds`` (``None``: for ever) for the run to close; ``None`` if still open.

    A long poll on the history (close event only): it returns the moment the workflow ends,
    which keeps the finished-to-status delay short without polling faster.
    """
    try:
        result = await asyncio.wait_for(handle.result(follow_runs=False), timeout=seconds)
    except TimeoutError:
        return None
    except asyncio.CancelledError:
        raise
    except WorkflowFailureError:  # failed, cancelled, terminated, timed out: closed, no result
        return Closed(None)
    return Closed(result)


async def live_status(handle: WorkflowHandle[Any, Any]) -> JobStatus:
    return await handle.query(SwarmWorkflow.status)


async def closed_result(
    handle: WorkflowHandle[Any, Any],
    desc: WorkflowExecutionDescription,
    ledger: Ledger | None,
    *,
    name: str,
    uid: str,
) -> SwarmJobResult:
    """The outcome of a closed run: its result, or for a run that returned none (cancelled,
    terminated, timed out, failed), what the ledger recorded about the job."""
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        result: SwarmJobResult = await handle.result(follow_runs=False)
        return result
    phase, reason = _ENDINGS.get(desc.status, ("Failed", "WorkflowFailed: the workflow failed"))
    if desc.status == WorkflowExecutionStatus.FAILED:
        try:
            await handle.result(follow_runs=False)
        except Exception as e:  # the failure is the message
            cause = getattr(e, "cause", None) or e
            reason = f"WorkflowFailed: {cause}"
    job = await ledger.get_job(uid) if ledger is not None else None
    critical = (job.critical_steps if job else None) or 0
    total = (job.total_steps if job else None) or 0
    report = (job.report if job else None) or {}
    sub = report.get("subagents", {}) if isinstance(report, dict) else {}
    return SwarmJobResult.of(
        name=name,
        uid=uid,
        phase=phase,
        reason=reason,
        critical_steps=critical,
        total_steps=total,
        subagents=(
            int(sub.get("spawned", 0)),
            int(sub.get("succeeded", 0)),
            int(sub.get("failed", 0)),
        ),
        model_seconds=(job.model_seconds if job and job.model_seconds else 0.0),
        wall_seconds=(job.wall_seconds if job and job.wall_seconds else 0.0),
        quality=job.quality if job else None,
        result=(job.result if job and job.result else ""),
    )


async def cancel_and_wait(client: Client, wid: str, seconds: float) -> str:
    """Cancel the open run of ``wid`` and wait up to ``seconds`` for it to close.

    Returns the run's final status name (``CANCELED``, ``COMPLETED``, ...), ``RUNNING`` when it
    did not close in time, or ``NOT_FOUND`` when the job never started a workflow.
    """
    desc = await describe(client, wid)
    if desc is None:
        return "NOT_FOUND"
    if desc.status != OPEN:
        return desc.status.name if desc.status else "UNKNOWN"
    handle = client.get_workflow_handle(wid, run_id=desc.run_id)
    await handle.cancel()
    try:
        await wait_closed(handle, seconds)
    except Exception as e:  # the describe below says where the run stands
        log.warning("waiting for the cancelled run failed workflow_id=%s error=%r", wid, e)
    desc = await handle.describe()
    return desc.status.name if desc.status else "UNKNOWN"
