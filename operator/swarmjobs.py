"""SwarmJob handlers: accept a job and start its workflow, cancel it when the object is
deleted. Its status while it runs is kept by the daemon of ``watching``.

The lifecycle, as ``kubectl get sj`` shows it:

    (created) -> Pending (PoolNotFound or ToolServerNotFound, retried until it appears)
              -> Running (workflow ``swarmjob-<uid>`` started, conditions Accepted and Running)
              -> Succeeded | Failed | Cancelled (final counters, result, condition, event)
    invalid spec -> Failed (Accepted=False, reason InvalidSpec), nothing started
    answer key's ConfigMap or key missing -> Pending (AnswerKeyNotFound, retried until it appears)
    answer key's content invalid -> Failed (Accepted=False, reason InvalidAnswerKey)

A job with ``spec.rollout`` runs as a rollout group (workflow ``rollout-<uid>``, see
``rollout_groups``; its status is kept by ``rollout_watching``).

Pool names are resolved before the start (see ``pool_resolution``); a pool the workers cannot
serve yet keeps the job Pending (PoolNotFound) with the reason, and so does a ToolServer whose
tools it names (``SERVER__TOOL``) that is not Ready yet (ToolServerNotFound). Starting is
idempotent (see ``workflow_runs``), so a restarted operator or a retried handler never runs a
job twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

from kswarm.errors import SpecError
from kswarm.operator import answer_keys, pool_resolution
from kswarm.operator import rollout_groups as groups
from kswarm.operator import status as job_status
from kswarm.operator import workflow_runs as runs
from kswarm.operator.bodies import SwarmJobStatus
from kswarm.operator.runtime import runtime_of
from kswarm.rollouts.answer_keys import AnswerKeyNotFound
from kswarm.spec import parse_manifest
from kswarm.tools import SERVER_SEPARATOR
from kswarm.workflows import TASK_QUEUE, SwarmJobInput

__all__ = ["DELETED_MEMO", "GROUP", "PLURAL", "VERSION", "cancel_job", "plain", "start_job"]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "swarmjobs"
START_RETRY_SECONDS = 2.0
DELETED_MEMO = "deleted_workflow"
"""Attribute of an object's kopf memo: the workflow its deletion handler has dealt with."""


def _manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.get("metadata", {})),
        "spec": plain(body.get("spec", {})),
    }


def plain(value: Any) -> Any:
    """kopf's mapping and list views as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def missing_tool_servers(manifest: Mapping[str, Any], known_tools: Iterable[str]) -> list[str]:
    """Servers of the ``SERVER__TOOL`` / ``SERVER__*`` names a job's tool lists hold that no
    Ready ToolServer provides yet (the job waits for them, as for a pool); a server that is
    there but lacks the tool is the spec's error, not a wait."""
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return []
    sub = spec.get("subagents")
    names = [
        *(spec.get("tools") or []),
        *((sub or {}).get("tools") or []),
        *(spec.get("requireApproval") or []),
    ]
    ready = {t.split(SERVER_SEPARATOR, 1)[0] for t in known_tools if SERVER_SEPARATOR in t}
    wanted = {
        n.split(SERVER_SEPARATOR, 1)[0]
        for n in names
        if isinstance(n, str) and SERVER_SEPARATOR in n
    }
    return sorted(wanted - ready)


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
    seen = cast(SwarmJobStatus, status)
    conditions = seen.get("conditions")

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

    servers = missing_tool_servers(_manifest(body), rt.known_tools)
    if servers:
        message = (
            f"no Ready ToolServer {', '.join(map(repr, servers))} lists the tools the job names; "
            "the job starts once it does"
        )
        if seen.get("reason") != "ToolServerNotFound":
            kopf.event(body, type="Warning", reason="ToolServerNotFound", message=message)
        not_accepted("Pending", "ToolServerNotFound", message)
        raise kopf.TemporaryError(message, delay=rt.config.pool_retry_seconds)

    try:
        job = parse_manifest(_manifest(body), known_tools=rt.known_tools)
        spec, missing = await pool_resolution.resolve_job_pools(rt, job.spec, namespace, pool_index)
        groups.check_spec(spec)
    except SpecError as e:
        not_accepted("Failed", "InvalidSpec", str(e))
        kopf.event(body, type="Warning", reason="InvalidSpec", message=str(e))
        log.info("job refused namespace=%s name=%s error=%r", namespace, name, str(e))
        raise kopf.PermanentError(f"invalid spec: {e}") from e

    if missing:
        message = f"{'; '.join(missing)}; the job starts once its pools can be served"
        if seen.get("reason") != "PoolNotFound":
            kopf.event(body, type="Warning", reason="PoolNotFound", message=message)
        not_accepted("Pending", "PoolNotFound", message)
        raise kopf.TemporaryError(message, delay=rt.config.pool_retry_seconds)

    try:
        spec = await answer_keys.read_answer_key(rt.api, spec, namespace)
    except AnswerKeyNotFound as e:
        if seen.get("reason") != "AnswerKeyNotFound":
            kopf.event(body, type="Warning", reason="AnswerKeyNotFound", message=str(e))
        not_accepted("Pending", "AnswerKeyNotFound", str(e))
        raise kopf.TemporaryError(str(e), delay=rt.config.pool_retry_seconds) from e
    except SpecError as e:
        not_accepted("Failed", "InvalidAnswerKey", str(e))
        kopf.event(body, type="Warning", reason="InvalidAnswerKey", message=str(e))
        raise kopf.PermanentError(f"invalid answer key: {e}") from e

    inp = SwarmJobInput(name=name, namespace=namespace, uid=uid, spec=spec)
    try:
        if spec.rollout is not None:
            group = groups.group_input(name, namespace, uid, spec)
            started = await groups.start_once(rt.client, group)
        else:
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
        startedAt=seen.get("startedAt") or job_status.timestamp(started.start_time or now),
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
    wid = cast(SwarmJobStatus, status).get("workflowId") or (
        groups.workflow_id(uid) if groups.is_rollout(body.get("spec")) else runs.workflow_id(uid)
    )
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
