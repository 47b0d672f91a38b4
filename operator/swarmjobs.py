"""SwarmJob handlers: accept a job and start its workflow, keep its status true while it runs,
cancel it when the object is deleted.

The lifecycle, as ``kubectl get sj`` shows it:

    (created) -> Pending (PoolNotFound, retried until the pool appears)
              -> Running (workflow ``swarmjob-<uid>`` started, conditions Accepted and Running)
              -> Succeeded | Failed | Cancelled (final counters, result, condition, event)
    invalid spec -> Failed (Accepted=False, reason InvalidSpec), nothing started

Pool names are resolved before the start: ``fast`` in namespace ``team-a`` is the ModelPool
``team-a/fast`` when one exists (the workers know it by that name, see ``workerpools``), else a
static pool ``fast``; the workflow gets the resolved names. A pool the workers cannot serve yet
keeps the job Pending (PoolNotFound) with the reason.

Starting is idempotent (see ``workflow_runs``), so a restarted operator or a retried handler
never runs a job twice. The status of a running job is rebuilt by one daemon per job at a steady
interval from the workflow's ``status`` query and the ledger, and written only when it changed;
the daemon ends with the job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Container, Mapping
from typing import Any

import kopf
from temporalio.client import WorkflowHandle

from kswarm.errors import SpecError
from kswarm.llm.pools import qualified_name, split_name
from kswarm.operator import status as job_status
from kswarm.operator import workflow_runs as runs
from kswarm.operator.kube import KubeNotFound
from kswarm.operator.runtime import Runtime, runtime_of
from kswarm.operator.workerpools import PoolsDocument
from kswarm.spec import SwarmJobSpec, parse_manifest
from kswarm.workflows import TASK_QUEUE, SwarmJobInput, SwarmJobResult

__all__ = [
    "GROUP",
    "PLURAL",
    "VERSION",
    "PoolMissing",
    "cancel_job",
    "resolve_pool",
    "resolve_pools",
    "start_job",
    "watch_job",
]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "swarmjobs"
START_RETRY_SECONDS = 2.0
DELETED_MEMO = "deleted_workflow"
"""Attribute of an object's kopf memo: the workflow its deletion handler has dealt with."""
PUBLISH_WAIT_SECONDS = 3.0
"""How long a job's start waits for the workers' pools document to take in a new ModelPool."""


def _manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.get("metadata", {})),
        "spec": _plain(body.get("spec", {})),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class PoolMissing(Exception):
    """A pool a job names cannot be served (yet); the message says why."""


def resolve_pool(
    path: str,
    pool: str,
    namespace: str,
    *,
    static: Container[str],
    pool_index: Container[tuple[str, str]],
    publishing: bool,
    document: PoolsDocument | None,
) -> str:
    """The name the workers know the pool ``pool`` of a job in ``namespace`` by.

    The job's namespace's ModelPool comes first (``NAMESPACE/NAME``), then a static pool of
    that name. With ``publishing`` (the operator writes the workers' pools document), a
    ModelPool counts once ``document`` lists it. Raises :class:`SpecError` for a pool of
    another namespace (never allowed) and :class:`PoolMissing` for one that cannot be served.
    """
    owner, name = split_name(pool)
    if owner is not None and owner != namespace:
        raise SpecError(
            path,
            f"names the pool {pool!r} of namespace {owner!r}; a job uses the ModelPools of its "
            f"own namespace ({namespace!r}): give the pool's name only",
        )
    key = qualified_name(namespace, name)
    indexed = (namespace, name) in pool_index
    if not publishing:
        if indexed:
            return key
    elif document is not None and key in document:
        return key
    elif document is not None and key in document.left_out:
        raise PoolMissing(
            f"ModelPool {name!r} in namespace {namespace!r} cannot be served: "
            f"{document.left_out[key]}"
        )
    elif indexed:
        raise PoolMissing(
            f"ModelPool {name!r} in namespace {namespace!r} is not in the workers' pools yet"
        )
    if owner is None and name in static:
        return name
    raise PoolMissing(f"ModelPool {name!r} not found in namespace {namespace!r}")


def resolve_pools(
    spec: SwarmJobSpec,
    namespace: str,
    *,
    static: Container[str],
    pool_index: Container[tuple[str, str]],
    publishing: bool,
    document: PoolsDocument | None,
) -> tuple[SwarmJobSpec, list[str]]:
    """``spec`` with its pools resolved (:func:`resolve_pool`), and why any could not be."""
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for path, pool in (
        ("spec.orchestrator.pool", spec.orchestrator.pool),
        ("spec.subagents.pool", spec.subagents.pool),
    ):
        try:
            resolved[path] = resolve_pool(
                path,
                pool,
                namespace,
                static=static,
                pool_index=pool_index,
                publishing=publishing,
                document=document,
            )
        except PoolMissing as e:
            if str(e) not in missing:
                missing.append(str(e))
            resolved[path] = pool
    out = dataclasses.replace(
        spec,
        orchestrator=dataclasses.replace(
            spec.orchestrator, pool=resolved["spec.orchestrator.pool"]
        ),
        subagents=dataclasses.replace(spec.subagents, pool=resolved["spec.subagents.pool"]),
    )
    return out, missing


async def _resolve(
    rt: Runtime, spec: SwarmJobSpec, namespace: str, pool_index: Container[tuple[str, str]]
) -> tuple[SwarmJobSpec, list[str]]:
    """:func:`resolve_pools` with what the operator knows now; when a ModelPool is missing from
    the workers' document, one more (bounded) wait for the publisher to catch up."""
    publisher = rt.publisher

    def attempt() -> tuple[SwarmJobSpec, list[str]]:
        return resolve_pools(
            spec,
            namespace,
            static=_StaticPools(rt, publisher.document if publisher else None),
            pool_index=pool_index,
            publishing=publisher is not None,
            document=publisher.document if publisher else None,
        )

    resolved, missing = attempt()
    if missing and publisher is not None:
        await publisher.refresh(PUBLISH_WAIT_SECONDS)
        resolved, missing = attempt()
    return resolved, missing


class _StaticPools:
    """Static pool names: the configured ones and those the static pools file published."""

    def __init__(self, rt: Runtime, document: PoolsDocument | None) -> None:
        self.names = set(rt.config.static_pools) | set(document.static if document else ())

    def __contains__(self, name: object) -> bool:
        return name in self.names


async def start_job(
    body: kopf.Body,
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str,
    name: str,
    uid: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    pool_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Validate the job, resolve its pools, start its workflow once."""
    rt = runtime_of(memo)
    now = rt.now()
    generation = meta.get("generation")
    conditions = status.get("conditions")

    def not_accepted(phase: str, reason: str, message: str) -> None:
        accepted = {"type": "Accepted", "status": "False", "reason": reason, "message": message}
        patch.status.update(
            phase=phase,
            reason=reason,
            observedGeneration=generation,
            conditions=job_status.set_conditions(
                conditions, [accepted], now=now, generation=generation
            ),
        )

    try:
        job = parse_manifest(_manifest(body), known_tools=rt.known_tools)
        spec, missing = await _resolve(rt, job.spec, namespace, pool_index)
    except SpecError as e:
        not_accepted("Failed", "InvalidSpec", str(e))
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(e))
        log.info("job refused namespace=%s name=%s error=%r", namespace, name, str(e))
        raise kopf.PermanentError(f"invalid spec: {e}") from e

    if missing:
        message = f"{'; '.join(missing)}; the job starts once its pools can be served"
        if status.get("reason") != "PoolNotFound":
            kopf.event(body, type="Warning", reason="PoolNotFound", message=message)
        not_accepted("Pending", "PoolNotFound", message)
        raise kopf.TemporaryError(message, delay=rt.config.pool_retry_seconds)

    inp = SwarmJobInput(name=name, namespace=namespace, uid=uid, spec=spec)
    try:
        started = await runs.start_once(rt.client, inp)
    except Exception as e:  # Temporal away: try again soon
        raise kopf.TemporaryError(
            f"cannot start the workflow: {e}", delay=START_RETRY_SECONDS
        ) from e
    if started.created:
        kopf.event(
            body,
            type="Normal",
            reason="WorkflowStarted",
            message=f"workflow {started.workflow_id} (run {started.run_id}) started on task "
            f"queue {TASK_QUEUE}",
        )
    pools = ", ".join(dict.fromkeys((spec.orchestrator.pool, spec.subagents.pool)))
    patch.status.update(
        phase="Running",
        reason=None,
        workflowId=started.workflow_id,
        startedAt=status.get("startedAt") or job_status.timestamp(started.start_time or now),
        observedGeneration=generation,
        conditions=job_status.set_conditions(
            conditions,
            [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Validated",
                    "message": f"spec is valid; pools: {pools}",
                },
                {
                    "type": "Running",
                    "status": "True",
                    "reason": "WorkflowStarted",
                    "message": f"workflow {started.workflow_id} is running",
                },
            ],
            now=now,
            generation=generation,
        ),
    )


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
    interval = rt.config.status_interval
    while not status.get("workflowId"):  # a live view: the start handler fills it in
        if status.get("phase") in job_status.TERMINAL_PHASES or await stopped.wait(interval):
            return
    if status.get("phase") in job_status.TERMINAL_PHASES:
        return
    reporter = _Reporter(rt, body, namespace, name, dict(_plain(status)))
    wid = str(status["workflowId"])
    while not stopped:
        try:
            if await _follow(rt, reporter, stopped, wid, uid, name, meta.get("generation")):
                return
        except KubeNotFound:
            log.info("job gone namespace=%s name=%s", namespace, name)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Temporal, ledger or API hiccup: keep watching
            log.warning(
                "status pass failed namespace=%s name=%s error=%s: %s",
                namespace,
                name,
                type(e).__name__,
                e,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        await stopped.wait(interval)


async def _follow(
    rt: Runtime,
    reporter: _Reporter,
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
    ended, totals = await asyncio.gather(handle.describe(), ledger.job_counters(uid))
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
    reporter: _Reporter,
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
    reporter: _Reporter,
    handle: WorkflowHandle[Any, SwarmJobResult],
    uid: str,
    name: str,
) -> None:
    """One rebuild of a running job's status from its ``status`` query and the ledger."""
    js, counters = await asyncio.gather(runs.live_status(handle), rt.counters(uid))
    fresh = job_status.live_status(name, uid, js, counters)
    spawned = js.subagents_spawned - reporter.spawned_seen()
    await reporter.write(fresh)
    if spawned > 0:
        reporter.spawned_event(spawned, js.subagents_spawned, stage=js.stage)


class _Reporter:
    """Writes a job's status (only what changed) and posts its events."""

    def __init__(
        self, rt: Runtime, body: kopf.Body, namespace: str, name: str, last: dict[str, Any]
    ) -> None:
        self.rt, self.body, self.namespace, self.name = rt, body, namespace, name
        self.last = last

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


async def cancel_job(
    status: kopf.Status,
    body: kopf.Body,
    namespace: str,
    name: str,
    uid: str,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Finalizer: cancel the job's workflow and wait (bounded) for it to close.

    kopf may call it again for the same deletion (it forgets a finished deletion handler when
    a daemon of the object has not exited yet): a repeat is silent, its cancel a no-op. The
    object's own memo (kopf keeps one per object) remembers the first.
    """
    rt = runtime_of(memo)
    wid = str(status.get("workflowId") or runs.workflow_id(uid))
    if getattr(memo, DELETED_MEMO, None) == wid:
        return
    final = await runs.cancel_and_wait(rt.client, wid, rt.config.cancel_timeout)
    setattr(memo, DELETED_MEMO, wid)
    log.info(
        "job deleted namespace=%s name=%s workflow_id=%s workflow_status=%s",
        namespace,
        name,
        wid,
        final,
    )
    if final == "RUNNING":
        kopf.event(
            body,
            type="Warning",
            reason="CancelTimeout",
            message=f"workflow {wid} did not close within {rt.config.cancel_timeout:g}s of its "
            "cancellation; letting the object go",
        )
    elif final == "CANCELED":
        kopf.event(body, type="Normal", reason="Cancelled", message=f"workflow {wid} cancelled")
