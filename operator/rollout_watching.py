"""The daemon that follows a SwarmJob's rollout group and keeps its status true until it ends.

The group's twin of ``watching``: one daemon per SwarmJob with ``spec.rollout`` (kopf starts
this one instead of ``watching``'s for such a job) writes the group's progress at a steady
interval from the workflow's ``finished`` query, notices the close through a long poll beside
those passes, and then writes the final status: rewards and advantages from the workflow's
result, counters summed over the samples from the ledger (see ``rollout_groups`` for the
fields and the group's rule for its phase). Told to stop (the object is being deleted, or the
operator exits), it returns at once and writes nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle

from kswarm.operator import rollout_groups as groups
from kswarm.operator import status as job_status
from kswarm.operator import workflow_runs as runs
from kswarm.operator.kube import KubeNotFound
from kswarm.operator.runtime import Runtime, runtime_of
from kswarm.operator.swarmjobs import plain
from kswarm.operator.watching import Reporter, follow_until_final, started_workflow
from kswarm.workflows import RolloutResult, RolloutWorkflow

__all__ = ["watch_group"]

log = logging.getLogger(__name__)

_ENDINGS: dict[WorkflowExecutionStatus | None, tuple[str, str]] = {
    WorkflowExecutionStatus.CANCELED: ("Cancelled", "Cancelled: the rollout group was cancelled"),
    WorkflowExecutionStatus.TERMINATED: ("Failed", "Terminated: the workflow was terminated"),
    WorkflowExecutionStatus.TIMED_OUT: ("Failed", "TimedOut: the workflow timed out"),
}


async def watch_group(
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Daemon: write a running group's progress until it ends, then its final status."""
    rt = runtime_of(memo)
    wid = await started_workflow(status, stopped, rt.config.status_interval)
    if wid is None:
        return
    reporter = Reporter(rt, body, namespace, name, dict(plain(status)))
    samples = int(spec["rollout"]["samples"])
    generation = meta.get("generation")
    await follow_until_final(
        lambda: _follow(rt, reporter, stopped, wid, uid, samples, generation),
        stopped,
        rt.config.status_interval,
        what="group status",
        namespace=namespace,
        name=name,
    )


async def _follow(
    rt: Runtime,
    reporter: Reporter,
    stopped: kopf.DaemonStopped,
    wid: str,
    uid: str,
    samples: int,
    generation: int | None,
) -> bool:
    """Follow the group until it closes; ``True`` once the final status is written."""
    desc = await runs.describe(rt.client, wid)
    if desc is None:
        await reporter.write({"phase": "Failed", "reason": "WorkflowNotFound"})
        return True
    handle = groups.handle_for(rt.client, wid, desc.run_id)
    if desc.start_time and not reporter.last.get("startedAt"):
        await reporter.write({"startedAt": job_status.timestamp(desc.start_time)})
    result: RolloutResult | None = None
    if desc.status == runs.OPEN:
        closed = await _follow_open(rt, reporter, stopped, handle, samples)
        if closed is None or stopped:
            return False  # asked to stop: the next owner writes the end
        result = closed[0]
    ledger = await rt.ledger()
    if ledger is None:
        raise RuntimeError("the ledger is unavailable; the final status waits for its counters")
    ended = await handle.describe()
    if ended.status == WorkflowExecutionStatus.COMPLETED and result is None:
        result = await handle.result(follow_runs=False)
    finished_at = ended.close_time or rt.now()
    old = reporter.last.get("conditions")
    if result is not None:
        totals, _ = await groups.group_totals(ledger, [s.uid for s in result.samples])
        final = groups.final_status(
            result,
            totals,
            old_conditions=old,
            started_at=ended.start_time,
            finished_at=finished_at,
            now=rt.now(),
            generation=generation,
        )
    else:
        totals, phases = await groups.group_totals(ledger, groups.sample_uids(uid, samples))
        phase, reason = await _ending(handle, ended.status)
        final = groups.ended_status(
            phase,
            reason,
            samples,
            phases,
            totals,
            old_conditions=old,
            finished_at=finished_at,
            now=rt.now(),
            generation=generation,
        )
    await reporter.write(final)
    kind = "Normal" if final["phase"] == "Succeeded" else "Warning"
    message = next(c["message"] for c in final["conditions"] if c["type"] == "Running")
    reporter.event(kind, final["phase"], message)
    log.info(
        "rollout group finished namespace=%s name=%s phase=%s samples=%s succeeded=%s "
        "mean_reward=%s",
        reporter.namespace,
        reporter.name,
        final["phase"],
        final["rollout"]["samples"],
        final["rollout"]["succeeded"],
        final["rollout"].get("meanReward"),
    )
    return True


async def _ending(
    handle: WorkflowHandle[Any, RolloutResult], status: WorkflowExecutionStatus | None
) -> tuple[str, str]:
    """Phase and reason of a group whose workflow closed without a result."""
    if status in _ENDINGS:
        return _ENDINGS[status]
    try:
        await handle.result(follow_runs=False)
    except Exception as e:  # the failure is the message
        cause = getattr(e, "cause", None) or e
        return "Failed", f"WorkflowFailed: {cause}"
    return "Failed", "WorkflowFailed: the workflow failed"


async def _follow_open(
    rt: Runtime,
    reporter: Reporter,
    stopped: kopf.DaemonStopped,
    handle: WorkflowHandle[Any, RolloutResult],
    samples: int,
) -> tuple[RolloutResult | None] | None:
    """Write the progress every interval until the group closes: ``(result,)`` (``None``
    inside when it closed without one), or ``None`` when told to stop."""
    closing = asyncio.ensure_future(_closed(handle))
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        while not stopped and not closing.done():
            try:
                finished = await handle.query(RolloutWorkflow.finished)
                await reporter.write(groups.live_status(samples, finished))
            except KubeNotFound:
                raise
            except Exception as e:  # a busy worker answers late: the next pass will do
                log.debug("group progress query failed error=%r", e)
            await asyncio.wait(
                {closing, stopping},
                timeout=rt.config.status_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        if stopped or not closing.done():
            return None
        return (closing.result(),)
    finally:
        for task in (closing, stopping):
            task.cancel()


async def _closed(handle: WorkflowHandle[Any, RolloutResult]) -> RolloutResult | None:
    """A long poll for the close: the result, or ``None`` when it closed without one."""
    try:
        return await handle.result(follow_runs=False)
    except WorkflowFailureError:
        return None
