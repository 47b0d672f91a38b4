"""PARL rewards of a rollout, each term kept apart so a trainer can weigh them again.

The seed's reward of one rollout τ at training epoch e:

    R = λ_aux(e) · r_parallel + (1 - λ_aux(e)) · (I[success] · Q(τ))

* ``λ_aux(e)`` anneals linearly from ``start`` (0.1) at the first epoch to ``end`` (0.0) at the
  last (:class:`LambdaSchedule`);
* ``r_parallel`` rewards sub-agents that ran side by side and finished their task: the share of
  finished sub-agents that did not need a stage of their own, ``1 - K / N_fin``, where ``N_fin``
  is the number of sub-agents that finished (status Succeeded) and ``K`` the number of stages in
  which at least one finished. One stage of 4 finished sub-agents earns 0.75, four stages of one
  earn 0, sub-agents that never finish earn nothing (spurious parallelism);
* ``r_finish = N_fin / N_spawned`` (0 when nothing was spawned): recorded, not in ``R``;
* ``I[success]`` is 1 when the job succeeded (and its quality reached the evaluation's
  ``successThreshold`` when it names one);
* ``Q(τ)`` is the job's quality in [0, 1] (0 when the job has none).

The group-relative advantage of sample i of a group is ``(R_i - mean(R)) / std(R)`` with the
population standard deviation; it is 0 for every sample when all rewards are equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "LambdaSchedule",
    "RewardTerms",
    "RolloutOutcome",
    "group_advantages",
    "is_success",
    "r_finish",
    "r_parallel",
    "reward_terms",
]


@dataclass(frozen=True, kw_only=True)
class LambdaSchedule:
    """The weight of the auxiliary parallelism reward, annealed over training."""

    start: float = 0.1
    """``λ_aux`` at the first epoch (epoch 0)."""
    end: float = 0.0
    """``λ_aux`` at the last epoch (epoch ``epochs - 1``)."""

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"lambda {name} must be between 0 and 1, got {v}")

    def at(self, epoch: int, epochs: int) -> float:
        """``λ_aux(epoch)`` for a run of ``epochs`` epochs numbered from 0."""
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        if not 0 <= epoch < epochs:
            raise ValueError(f"epoch must be between 0 and {epochs - 1}, got {epoch}")
        if epochs == 1:
            return self.start
        return round(self.start + (self.end - self.start) * epoch / (epochs - 1), 12)


@dataclass(frozen=True, kw_only=True)
class RolloutOutcome:
    """What the reward needs to know of one finished job."""

    phase: str
    """Succeeded, Failed or Cancelled."""
    quality: float | None
    """The job's score in [0, 1]; ``None`` when it was not scored."""
    finished_per_stage: Sequence[int] = ()
    """For each stage that spawned sub-agents: how many of them finished (Succeeded)."""
    spawned: int = 0
    """Sub-agents spawned in all."""
    success_threshold: float | None = None
    """Quality a job must reach to count as a success; ``None``: succeeding is enough."""
    critical_steps: int = 0


@dataclass(frozen=True, kw_only=True)
class RewardTerms:
    """Every term of one rollout's reward, recorded separately."""

    epoch: int
    epochs: int
    lambda_aux: float
    r_parallel: float
    r_finish: float
    success: bool
    quality: float
    reward: float
    advantage: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The terms as flat numbers (ATIF metrics, dashboards, JSON)."""
        return {
            "lambda_aux": self.lambda_aux,
            "r_parallel": self.r_parallel,
            "r_finish": self.r_finish,
            "success": 1.0 if self.success else 0.0,
            "quality": self.quality,
            "reward": self.reward,
            "advantage": self.advantage,
            **self.extra,
        }


def r_parallel(finished_per_stage: Iterable[int]) -> float:
    """``1 - K / N_fin`` over the stages' finished sub-agents; 0 when none finished."""
    counts = [n for n in finished_per_stage if n > 0]
    finished = sum(counts)
    if finished == 0:
        return 0.0
    return 1.0 - len(counts) / finished


def r_finish(finished: int, spawned: int) -> float:
    """Share of spawned sub-agents that finished their task; 0 when none was spawned."""
    return finished / spawned if spawned else 0.0


def is_success(phase: str, quality: float | None, threshold: float | None) -> bool:
    """``I[success]``: the job succeeded, and reached ``threshold`` when one is set."""
    if phase != "Succeeded":
        return False
    return threshold is None or (quality is not None and quality >= threshold)


def reward_terms(
    outcome: RolloutOutcome,
    *,
    epoch: int,
    epochs: int,
    schedule: LambdaSchedule | None = None,
) -> RewardTerms:
    """The reward of one rollout at ``epoch`` of ``epochs`` (advantage left at 0)."""
    lam = (schedule or LambdaSchedule()).at(epoch, epochs)
    finished = sum(outcome.finished_per_stage)
    par = r_parallel(outcome.finished_per_stage)
    success = is_success(outcome.phase, outcome.quality, outcome.success_threshold)
    quality = outcome.quality if outcome.quality is not None else 0.0
    reward = lam * par + (1.0 - lam) * ((1.0 if success else 0.0) * quality)
    return RewardTerms(
        epoch=epoch,
        epochs=epochs,
        lambda_aux=lam,
        r_parallel=round(par, 6),
        r_finish=round(r_finish(finished, outcome.spawned), 6),
        success=success,
        quality=quality,
        reward=round(reward, 6),
    )


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """``(R_i - mean) / std`` for GRPO-style trainers (population std); all 0 when std is 0."""
    if not rewards:
        return []
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
    if std < 1e-12:
        return [0.0 for _ in rewards]
    return [round((r - mean) / std, 6) for r in rewards]
