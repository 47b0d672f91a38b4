"""The activity that scores a rollout group from its samples' ledger rows and stores the terms."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kswarm.rollouts import LambdaSchedule
from kswarm.rollouts.groups import outcome_from_report, score_group
from kswarm.workflows.resources import ActivityResources

__all__ = ["RolloutActivities", "ScoreRolloutInput", "ScoreRolloutResult"]


@dataclass
class ScoreRolloutInput:
    group_uid: str
    group_name: str
    uids: list[str]
    epoch: int
    epochs: int
    lambda_start: float = 0.1
    lambda_end: float = 0.0


@dataclass
class ScoreRolloutResult:
    terms: list[dict[str, float]] = field(default_factory=list)
    serial_collapse: list[bool] = field(default_factory=list)


class RolloutActivities(ActivityResources):
    """``score_rollout``."""

    @activity.defn(name="score_rollout")
    async def score_rollout(self, inp: ScoreRolloutInput) -> ScoreRolloutResult:
        """Reward terms and advantages of every sample, written into each job's report."""
        await self.ledger.flush()
        jobs = []
        for uid in inp.uids:
            job = await self.ledger.get_job(uid)
            if job is None:
                raise ApplicationError(
                    f"rollout {inp.group_uid}: sample job {uid} is not in the ledger",
                    non_retryable=True,
                )
            jobs.append(job)
        try:
            terms = score_group(
                [outcome_from_report(j.phase, j.quality, j.critical_steps, j.report) for j in jobs],
                epoch=inp.epoch,
                epochs=inp.epochs,
                schedule=LambdaSchedule(start=inp.lambda_start, end=inp.lambda_end),
            )
        except ValueError as e:  # a bad schedule or epoch: retrying cannot help
            raise ApplicationError(f"rollout {inp.group_uid}: {e}", non_retryable=True) from e
        out = ScoreRolloutResult()
        for index, (job, t) in enumerate(zip(jobs, terms, strict=True)):
            report = dict(job.report or {})
            report["rollout"] = {
                "group": inp.group_uid,
                "groupName": inp.group_name,
                "sample": index,
                "samples": len(jobs),
                "epoch": inp.epoch,
                "epochs": inp.epochs,
                "lambda": {"start": inp.lambda_start, "end": inp.lambda_end},
                "terms": t.metrics(),
            }
            await self.ledger.finish_job(job.uid, report=report, finished_at=job.finished_at)
            out.terms.append(t.metrics())
            out.serial_collapse.append(bool((report.get("collapse") or {}).get("serialCollapse")))
        await self.ledger.flush()
        return out
