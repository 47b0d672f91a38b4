"""``RolloutWorkflow``: one task sampled N times as one durable unit, then scored as a group.

Each sample is a :class:`~kswarm.workflows.swarm.SwarmWorkflow` child (job uid
``GROUP-sI``); the samples run concurrently, bounded only by the pools' limits. When all have
ended, one local activity reads their outcomes from the ledger, computes every sample's reward
terms and the group's advantages (:mod:`kswarm.rollouts`) and stores them in each job's report
under ``rollout``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from kswarm.rollouts.groups import sample_uid
    from kswarm.spec import RolloutSpec, SwarmJobSpec, parse_manifest
    from kswarm.workflows.inputs import SwarmJobInput, SwarmJobResult
    from kswarm.workflows.rollout_scoring import RolloutActivities, ScoreRolloutInput
    from kswarm.workflows.swarm import SwarmWorkflow

__all__ = ["RolloutInput", "RolloutResult", "RolloutSample", "RolloutWorkflow"]

SCORE_TIMEOUT = timedelta(seconds=120)


@dataclass
class RolloutInput:
    """A group: ``samples`` runs of one job at training ``epoch`` of ``epochs``."""

    name: str
    namespace: str
    uid: str
    spec: SwarmJobSpec
    samples: int
    epoch: int = 0
    epochs: int = 1
    lambda_start: float = 0.1
    """``λ_aux`` at epoch 0."""
    lambda_end: float = 0.0
    """``λ_aux`` at the last epoch."""
    temperature: float = 1.0
    """Sampling temperature of the samples' model calls."""
    seed: int = 0
    """Sample ``i`` samples with ``seed + i``."""

    @property
    def workflow_id(self) -> str:
        return f"rollout-{self.uid}"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], **group: Any) -> RolloutInput:
        """The group a SwarmJob manifest asks for in ``spec.rollout``; keywords override it."""
        m = parse_manifest(manifest)
        r = m.spec.rollout
        if r is not None:
            group = {
                "samples": r.samples,
                "epoch": r.epoch,
                "epochs": r.epochs,
                "lambda_start": r.lambda_start,
                "lambda_end": r.lambda_end,
                "temperature": r.temperature,
                "seed": r.seed,
                **group,
            }
        return cls(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec, **group)

    def sample(self, index: int) -> SwarmJobInput:
        """Sample ``index`` as a job whose ``spec.rollout`` names its own seed, which its
        model calls sample with (see ``ModelStepActivities``)."""
        rollout = RolloutSpec(
            samples=self.samples,
            epoch=self.epoch,
            epochs=self.epochs,
            lambda_start=self.lambda_start,
            lambda_end=self.lambda_end,
            temperature=self.temperature,
            seed=self.seed + index,
        )
        return SwarmJobInput(
            name=f"{self.name}-s{index}",
            namespace=self.namespace,
            uid=sample_uid(self.uid, index),
            spec=dataclasses.replace(self.spec, rollout=rollout),
        )


@dataclass
class RolloutSample:
    index: int
    uid: str
    phase: str
    reason: str | None
    critical_steps: int
    quality: float | None
    terms: dict[str, float] = field(default_factory=dict)
    """Every reward term (``lambda_aux``, ``r_parallel``, ``r_finish``, ``success``,
    ``quality``, ``reward``, ``advantage``)."""
    serial_collapse: bool = False


@dataclass
class RolloutResult:
    name: str
    uid: str
    epoch: int
    epochs: int
    samples: list[RolloutSample]
    mean_reward: float


@workflow.defn
class RolloutWorkflow:
    """Run a group's samples concurrently; score them together."""

    def __init__(self) -> None:
        self._done: dict[int, str] = {}

    @workflow.query
    def finished(self) -> dict[int, str]:
        """Phase of each sample that has ended, by index."""
        return dict(self._done)

    @workflow.run
    async def run(self, inp: RolloutInput) -> RolloutResult:
        async def run_sample(index: int) -> SwarmJobResult:
            job = inp.sample(index)
            result = await workflow.execute_child_workflow(
                SwarmWorkflow.run,
                job,
                id=job.workflow_id,
                task_queue=workflow.info().task_queue,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            )
            self._done[index] = result.phase
            return result

        results = await asyncio.gather(*(run_sample(i) for i in range(inp.samples)))
        scored = await workflow.execute_local_activity_method(
            RolloutActivities.score_rollout,
            ScoreRolloutInput(
                group_uid=inp.uid,
                group_name=inp.name,
                uids=[r.uid for r in results],
                epoch=inp.epoch,
                epochs=inp.epochs,
                lambda_start=inp.lambda_start,
                lambda_end=inp.lambda_end,
            ),
            start_to_close_timeout=SCORE_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=0, maximum_interval=timedelta(seconds=5)),
        )
        samples = [
            RolloutSample(
                index=i,
                uid=r.uid,
                phase=r.phase,
                reason=r.reason,
                critical_steps=r.critical_steps,
                quality=r.quality,
                terms=scored.terms[i],
                serial_collapse=scored.serial_collapse[i],
            )
            for i, r in enumerate(results)
        ]
        mean = sum(s.terms["reward"] for s in samples) / len(samples) if samples else 0.0
        return RolloutResult(
            name=inp.name,
            uid=inp.uid,
            epoch=inp.epoch,
            epochs=inp.epochs,
            samples=samples,
            mean_reward=round(mean, 6),
        )
