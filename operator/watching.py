"""The daemon that follows a running SwarmJob and keeps its status true until it ends.

One daemon per job rebuilds the status at a steady interval from the workflow's ``status``
query and the ledger, writes only what changed, posts the SubagentsSpawned events, and on the
run's close writes the final status (counters, result, condition, event). A long poll for the
close runs beside the passes, so the end is noticed at once. The daemon ends with the job, and
at once when kopf tells it to stop (the object is being deleted, or the operator exits): then
it writes nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import kopf
from temporalio.client import WorkflowHandle

from kswarm.operator import approvals
from kswarm.operator import status as job_status
from kswarm.operator import workflow_runs as runs
from kswarm.operator.bodies import SwarmJobStatus
from kswarm.operator.kube import KubeNotFound
from kswarm.operator.runtime import Runtime, runtime_of
from kswarm.operator.swarmjobs import GROUP, PLURAL, VERSION, plain
from kswarm.workflows import SwarmJobResult

__all__ = ["Reporter", "follow_until_final", "started_workflow", "watch_job"]

log = logging.getLogger(__name__)


async def watch_job(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    """Daemon: rebuild the status of a running job until it ends, then write the final one.

    It returns on its own once the final status is written (and at once for a job that has
    ended before), and leaves early, between two passes, when kopf asks it to stop.
    """
    rt = runtime_of(memo)
    wid = await started_workflow(status, stopped, rt.config.status_interval)
    if wid is None:
        return
    reporter = Reporter(rt, body, namespace, name, dict(plain(status)), memo)
    generation = meta.get("generation")
    await follow_until_final(
        lambda: _follow(rt, reporter, stopped, wid, uid, name, generation),
        stopped,
        rt.config.status_interval,
        what="status",
        namespace=namespace,
        name=name,
    )


async def started_workflow(
    status: kopf.Status, stopped: kopf.DaemonStopped, interval: float
) -> str | None:
    """The job's workflow id once its start handler has written it; ``None`` when the job has
    ended (before or instead) or kopf stops the daemon first."""
    seen = cast(SwarmJobStatus, status)  # a live view: the start handler fills it in
    while not seen.get("workflowId"):
        if seen.get("phase") in job_status.TERMINAL_PHASES or await stopped.wait(interval):
            return None
    if seen.get("phase") in job_status.TERMINAL_PHASES:
        return None
    return seen["workflowId"]


async def follow_until_final(
    follow: Callable[[], Awaitable[bool]],
    stopped: kopf.DaemonStopped,
    interval: float,
    *,
    what: str,
    namespace: str,
    name: str,
) -> None:
    """Run ``follow`` every ``interval`` until it returns ``True`` (the final status is
    written), the object is gone or kopf stops the daemon; a failed pass (Temporal, the
    ledger or the API server) is logged and the next one tries again."""
    while not stopped:
        try:
            if await follow():
                return
        except KubeNotFound:
            log.info("job gone namespace=%s name=%s", namespace, name)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Temporal, ledger or API hiccup: keep watching
            log.warning(
                "%s pass failed namespace=%s name=%s error=%s: %s",
                what,
                namespace,
                name,
                type(e).__name__,
                e,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        await stopped.wait(interval)


async def _follow(
    rt: Runtime,
    reporter: Reporter,
    stopped: kopf.DaemonStopped,
    wid: str,
    uid: str,
    name: str,
    generation: int | None,
) -> bool:
    """Follow the run until it closes; ``True`` once the final status is written.

    Told to stop (the object is being deleted, or the operator exits), it returns at once
    without writing: kopf holds the object's finalizer until its daemons have exited, and
    re-runs the deletion handler on every pass until then.
    """
    desc = await runs.describe(rt.client, wid)
    if desc is None:
        await reporter.write({"phase": "Failed", "reason": "WorkflowNotFound"})
        return True
    handle = runs.handle_for(rt.client, wid, desc.run_id)
    if desc.start_time and not reporter.last.get("startedAt"):
        await reporter.write({"startedAt": job_status.timestamp(desc.start_time)})
    closed: runs.Closed | None = None
    if desc.status == runs.OPEN:
        closed = await _follow_open(rt, reporter, stopped, handle, uid, name)
        if closed is None:
            return False  # asked to stop
    if stopped:
        return False
    ledger = await rt.ledger()
    if ledger is None:
        raise RuntimeError("the ledger is unavailable; the final status waits for its counters")
    ended, totals, waiting = await asyncio.gather(
        handle.describe(), ledger.job_counters(uid), ledger.awaiting_tool_calls(uid)
    )
    if closed is not None and closed.result is not None:
        result = closed.result
    else:
        result = await runs.closed_result(handle, ended, ledger, name=name, uid=uid)
    final = job_status.final_status(
        result,
        totals,
        old_conditions=reporter.last.get("conditions"),
        finished_at=ended.close_time or rt.now(),
        now=rt.now(),
        generation=generation,
    )
    final.update(
        approvals.final_fields(final, reporter.last, now=rt.now(), still_waiting=bool(waiting))
    )
    unseen = result.subagents_spawned - reporter.spawned_seen()
    await reporter.write(final)
    if unseen > 0:  # a short job can end before a live pass sees its spawns
        reporter.spawned_event(unseen, result.subagents_spawned, stage=None)
    kind = "Normal" if final["phase"] == "Succeeded" else "Warning"
    message = next(c["message"] for c in final["conditions"] if c["type"] == "Running")
    reporter.event(kind, final["phase"], message)
    lag = (rt.now() - ended.close_time).total_seconds() if ended.close_time else 0.0
    log.info(
        "job finished namespace=%s name=%s phase=%s critical_steps=%s tool_calls=%s "
        "status_lag_ms=%.0f",
        reporter.namespace,
        name,
        final["phase"],
        final["criticalSteps"],
        final["toolCalls"]["total"],
        lag * 1000,
    )
    return True


async def _follow_open(
    rt: Runtime,
    reporter: Reporter,
    stopped: kopf.DaemonStopped,
    handle: WorkflowHandle[Any, SwarmJobResult],
    uid: str,
    name: str,
) -> runs.Closed | None:
    """Rebuild the live status every interval until the run closes (``None``: told to stop).

    A long poll for the close runs beside the passes, so the end is noticed at once even when
    a pass is slow (a busy worker answers queries late).
    """
    closing = asyncio.ensure_future(runs.wait_closed(handle, None))
    stopping = asyncio.ensure_future(_stopping(stopped))
    live: asyncio.Future[None] | None = None
    try:
        while not stopped:
            live = asyncio.ensure_future(_live_pass(rt, reporter, handle, uid, name))
            await asyncio.wait({live, closing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if closing.done() or stopping.done():
                break
            await live
            await asyncio.wait({closing, stopping}, timeout=rt.config.status_interval)
            if closing.done() or stopping.done():
                break
        if stopped:  # a deletion or the operator's exit: the next owner writes the end
            return None
        return closing.result() if closing.done() else None
    finally:
        for task in (closing, stopping, live):
            if task is not None:
                task.cancel()


async def _stopping(stopped: kopf.DaemonStopped) -> None:
    """Returns once kopf asks the daemon to stop."""
    await stopped.wait()


async def _live_pass(
    rt: Runtime,
    reporter: Reporter,
    handle: WorkflowHandle[Any, SwarmJobResult],
    uid: str,
    name: str,
) -> None:
    """One rebuild of a running job's status from its ``status`` query and the ledger."""
    js, counters, waiting = await asyncio.gather(
        runs.live_status(handle), rt.counters(uid), approvals.pending_calls(rt, uid)
    )
    fresh = job_status.live_status(name, uid, js, counters)
    await approvals.retry_undelivered(rt, reporter.body, uid, reporter.memo)
    if waiting is not None:
        fresh.update(approvals.status_fields(waiting, reporter.last, name=name, now=rt.now()))
    spawned = js.subagents_spawned - reporter.spawned_seen()
    await reporter.write(fresh)
    if spawned > 0:
        reporter.spawned_event(spawned, js.subagents_spawned, stage=js.stage)


class Reporter:
    """Writes a job's status (only what changed) and posts its events (a rollout group's
    daemon uses it too)."""

    def __init__(
        self,
        rt: Runtime,
        body: kopf.Body,
        namespace: str,
        name: str,
        last: dict[str, Any],
        memo: Any = None,
    ) -> None:
        self.rt, self.body, self.namespace, self.name = rt, body, namespace, name
        self.last = last
        self.memo = memo
        """The object's kopf memo (decisions by annotation not delivered yet)."""

    async def write(self, fields: Mapping[str, Any]) -> None:
        delta = job_status.changed_fields(self.last, fields)
        if not delta:
            return
        await self.rt.api.patch_status(GROUP, VERSION, PLURAL, self.namespace, self.name, delta)
        self.last.update(delta)

    def event(self, kind: str, reason: str, message: str) -> None:
        kopf.event(self.body, type=kind, reason=reason, message=message)

    def spawned_seen(self) -> int:
        """Sub-agents spawned as of the status last written."""
        return int(self.last.get("subagents", {}).get("spawned", 0))

    def spawned_event(self, spawned: int, total: int, *, stage: int | None) -> None:
        where = f" in stage {stage}" if stage is not None else ""
        self.event(
            "Normal", "SubagentsSpawned", f"{spawned} sub-agents spawned{where} ({total} in total)"
        )
