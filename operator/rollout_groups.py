"""A SwarmJob with ``spec.rollout`` runs as a rollout group: start it, say where it stands.

Such a job runs one :class:`~kswarm.workflows.RolloutWorkflow`, ``rollout-<metadata.uid>``,
instead of one SwarmWorkflow: ``spec.rollout.samples`` samples of the task run concurrently as
its child workflows (sample ``i`` is the ledger job ``<uid>-s<i>``, workflow
``swarmjob-<uid>-s<i>``), and once all have ended they are scored together (PARL reward terms
and group-relative advantages, see :mod:`kswarm.rollouts`). Starting is idempotent as for a
single job (see ``workflow_runs``); deleting the SwarmJob cancels the group's workflow, which
cancels the samples that still run (their parent-close policy).

``status.rollout`` while it runs: ``samples``, ``done``, ``succeeded``, ``failed`` (a sample
that ended otherwise than Succeeded, cancellations included) and ``progress`` (``done/samples``,
the ``Samples`` column of ``kubectl get sj -o wide``). Once scored it adds ``epoch``,
``epochs``, ``lambdaAux``, ``meanReward``, ``meanQuality`` and ``rewards``, one compact entry per
sample (``sample``, ``phase``, ``reward``, ``advantage``, ``quality``). The counters of the
status (sub-agents, tool calls, model calls, tokens) are the samples' sums from the ledger.

The group's rule for its phase:

* ``Succeeded``: every sample ended, the group was scored, and at least one sample succeeded.
  A failed sample is training data, not an error of the group: its reward says how bad it was
  (a serial plan stopped by ``spec.limits.maxCriticalSteps`` is exactly such a sample).
* ``Failed``: no sample succeeded (reason ``NoSampleSucceeded``: the group carries no signal,
  and something is wrong with the task, the pools or the scorer), or the group's workflow
  failed, was terminated or timed out (the reasons of a single job).
* ``Cancelled``: the group's workflow was cancelled.

Everything here but :func:`start_once` and :func:`group_totals` is pure.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle

from kswarm.errors import SpecError
from kswarm.ledger import JobCounters, Ledger
from kswarm.operator import status as job_status
from kswarm.operator import workflow_runs as runs
from kswarm.operator.workflow_runs import Started
from kswarm.rollouts.groups import sample_uid
from kswarm.spec import RolloutSpec, SwarmJobSpec
from kswarm.tools.control import STEERING_TOOLS
from kswarm.workflows import RolloutInput, RolloutResult, RolloutWorkflow

__all__ = [
    "Totals",
    "check_spec",
    "ended_status",
    "final_status",
    "group_input",
    "group_totals",
    "handle_for",
    "is_rollout",
    "live_status",
    "progress",
    "sample_uids",
    "start_once",
    "workflow_id",
]

log = logging.getLogger(__name__)

REWARDS_LIMIT = 256
"""Entries of ``status.rollout.rewards`` (``spec.rollout.samples`` is at most 256)."""


def is_rollout(spec: Mapping[str, Any] | None) -> bool:
    """Whether a SwarmJob's ``spec`` asks for a rollout group (kopf's ``when`` filter)."""
    return isinstance(spec, Mapping) and isinstance(spec.get("rollout"), Mapping)


def workflow_id(uid: str) -> str:
    """The group's workflow id, as :attr:`RolloutInput.workflow_id` names it."""
    return f"rollout-{uid}"


def check_spec(spec: SwarmJobSpec) -> None:
    """What the CRD's schema cannot say: a group needs a scorer for ``Q(τ)`` (as ``kswarm
    rollout`` does)."""
    if spec.rollout is not None and spec.evaluation is None:
        raise SpecError("spec.evaluation", "spec.rollout needs a scorer to compute Q(τ)")


def group_input(name: str, namespace: str, uid: str, spec: SwarmJobSpec) -> RolloutInput:
    """The :class:`RolloutInput` of a SwarmJob with ``spec.rollout`` (its pools resolved and
    its answer key inlined)."""
    group: RolloutSpec | None = spec.rollout
    if group is None:
        raise ValueError("the job has no spec.rollout")
    return RolloutInput(
        name=name,
        namespace=namespace,
        uid=uid,
        spec=spec,
        samples=group.samples,
        epoch=group.epoch,
        epochs=group.epochs,
        lambda_start=group.lambda_start,
        lambda_end=group.lambda_end,
        temperature=group.temperature,
        seed=group.seed,
    )


def handle_for(
    client: Client, wid: str, run_id: str | None = None
) -> WorkflowHandle[Any, RolloutResult]:
    """A handle whose ``result()`` is a :class:`RolloutResult`."""
    return client.get_workflow_handle_for(RolloutWorkflow.run, wid, run_id=run_id)


async def start_once(client: Client, inp: RolloutInput) -> Started:
    """Start the group's workflow unless a run of its id exists (open or closed)."""
    return await runs.start_once(client, inp, workflow=RolloutWorkflow.run)


# --------------------------------------------------------------------------- pure status


def progress(samples: int, phases: Iterable[str]) -> dict[str, Any]:
    """``status.rollout``'s counters from the phases of the samples that have ended."""
    ended = [p for p in phases if p in job_status.TERMINAL_PHASES]
    succeeded = sum(1 for p in ended if p == "Succeeded")
    return {
        "samples": samples,
        "done": len(ended),
        "succeeded": succeeded,
        "failed": len(ended) - succeeded,
        "progress": f"{len(ended)}/{samples}",
    }


def live_status(samples: int, finished: Mapping[Any, str]) -> dict[str, Any]:
    """Status fields of a running group from its ``finished`` query (phase by sample index)."""
    return {"phase": "Running", "rollout": progress(samples, finished.values())}


class Totals:
    """The samples' counters summed: sub-agents from their results, the rest from the ledger."""

    def __init__(self) -> None:
        self.subagents = {"spawned": 0, "succeeded": 0, "failed": 0, "running": 0}
        self.tool_calls = {"total": 0, "failed": 0, "deduplicated": 0}
        self.llm_calls = 0
        self.tokens = {"input": 0, "output": 0}

    def add(self, report: Mapping[str, Any] | None, counters: JobCounters) -> None:
        """Add one sample: its ledger report (``subagents``) and its ledger counters, counted
        as :func:`kswarm.workflows.report.build_report` counts them."""
        sub = (report or {}).get("subagents") or {}
        for key in ("spawned", "succeeded", "failed"):
            self.subagents[key] += int(sub.get(key) or 0)
        control = sum(n for tool, n in counters.by_tool.items() if tool in STEERING_TOOLS)
        self.tool_calls["total"] += counters.tool_calls_total - control
        self.tool_calls["failed"] += counters.tool_calls_failed + counters.tool_calls_refused
        self.tool_calls["deduplicated"] += counters.tool_calls_deduplicated
        self.llm_calls += counters.llm_calls
        self.tokens["input"] += counters.tokens_input
        self.tokens["output"] += counters.tokens_output

    def fields(self) -> dict[str, Any]:
        return {
            "subagents": dict(self.subagents),
            "toolCalls": dict(self.tool_calls),
            "llmCalls": self.llm_calls,
            "tokens": dict(self.tokens),
        }


async def group_totals(ledger: Ledger, uids: Sequence[str]) -> tuple[Totals, list[str]]:
    """The summed counters of the samples ``uids`` and each one's phase in the ledger
    (``""`` for a sample that never started)."""
    totals, phases = Totals(), []
    for uid in uids:
        job = await ledger.get_job(uid)
        phases.append(job.phase if job is not None and job.phase else "")
        if job is not None:
            totals.add(job.report, await ledger.job_counters(uid))
    return totals, phases


def sample_uids(uid: str, samples: int) -> list[str]:
    return [sample_uid(uid, i) for i in range(samples)]


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 6) if values else 0.0


def final_status(
    result: RolloutResult,
    totals: Totals,
    *,
    old_conditions: Iterable[Mapping[str, Any]] | None,
    started_at: datetime | None,
    finished_at: datetime,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The whole status of a group whose workflow completed (every sample scored)."""
    samples = result.samples
    rollout = progress(len(samples), (s.phase for s in samples))
    rollout.update(
        epoch=result.epoch,
        epochs=result.epochs,
        lambdaAux=samples[0].terms["lambda_aux"] if samples else 0.0,
        meanReward=result.mean_reward,
        meanQuality=_mean([s.terms["quality"] for s in samples]),
        rewards=[
            {
                "sample": s.index,
                "phase": s.phase,
                "reward": round(s.terms["reward"], 6),
                "advantage": round(s.terms["advantage"], 6),
                "quality": round(s.terms["quality"], 6),
            }
            for s in samples[:REWARDS_LIMIT]
        ],
    )
    out: dict[str, Any] = {"rollout": rollout, **totals.fields()}
    out["finishedAt"] = job_status.timestamp(finished_at)
    if started_at is not None:
        out["wallSeconds"] = round(max(0.0, (finished_at - started_at).total_seconds()), 3)
    summary = (
        f"{rollout['samples']} samples ({rollout['succeeded']} succeeded, {rollout['failed']} "
        f"failed), mean R {result.mean_reward:g}, mean Q {rollout['meanQuality']:g} at epoch "
        f"{result.epoch} of {result.epochs} (λ_aux {rollout['lambdaAux']:g})"
    )
    if rollout["succeeded"] > 0:
        out["phase"] = out["reason"] = "Succeeded"
        updates = [
            {"type": "Running", "status": "False", "reason": "Succeeded", "message": summary},
            {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": summary},
        ]
    else:
        first = next((s.reason for s in samples if s.reason), None)
        message = f"NoSampleSucceeded: {summary}" + (f"; sample 0: {first}" if first else "")
        out["phase"], out["reason"] = "Failed", "NoSampleSucceeded"
        updates = [
            {"type": "Running", "status": "False", "reason": out["reason"], "message": message},
            {"type": "Failed", "status": "True", "reason": out["reason"], "message": message},
        ]
    out["conditions"] = job_status.set_conditions(
        old_conditions, updates, now=now, generation=generation
    )
    return out


def ended_status(
    phase: str,
    reason: str,
    samples: int,
    phases: Iterable[str],
    totals: Totals,
    *,
    old_conditions: Iterable[Mapping[str, Any]] | None,
    finished_at: datetime,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The status of a group whose workflow closed without a result (cancelled, failed,
    terminated, timed out): the samples' progress and counters from the ledger, no rewards."""
    code = job_status.reason_code(reason, phase)
    out: dict[str, Any] = {
        "phase": phase,
        "reason": code,
        "finishedAt": job_status.timestamp(finished_at),
        "rollout": progress(samples, phases),
        **totals.fields(),
    }
    updates = [
        {"type": "Running", "status": "False", "reason": code, "message": reason},
        {"type": "Failed", "status": "True", "reason": code, "message": reason},
    ]
    out["conditions"] = job_status.set_conditions(
        old_conditions, updates, now=now, generation=generation
    )
    return out
