"""A rollout group: one task sampled N times, scored together.

Each sample is a job; its reward terms come from what the job recorded (phase, quality, the
finished sub-agents per stage, the evaluation's success threshold). The group's advantages are
computed over all samples at once, so they exist only when every sample has ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from kswarm.rollouts.rewards import (
    LambdaSchedule,
    RewardTerms,
    RolloutOutcome,
    group_advantages,
    reward_terms,
)

__all__ = ["outcome_from_report", "sample_uid", "score_group"]


def sample_uid(group_uid: str, index: int) -> str:
    """The job uid of sample ``index`` of a group."""
    return f"{group_uid}-s{index}"


def outcome_from_report(
    phase: str, quality: float | None, critical_steps: int | None, report: Mapping[str, Any] | None
) -> RolloutOutcome:
    """The :class:`RolloutOutcome` of a job as its ledger row records it."""
    report = report or {}
    evaluation = report.get("evaluation") or {}
    return RolloutOutcome(
        phase=phase,
        quality=quality,
        finished_per_stage=tuple(int(n) for n in report.get("finishedPerStage") or ()),
        spawned=int((report.get("subagents") or {}).get("spawned") or 0),
        success_threshold=evaluation.get("successThreshold"),
        critical_steps=int(critical_steps or 0),
    )


def score_group(
    outcomes: Sequence[RolloutOutcome],
    *,
    epoch: int,
    epochs: int,
    schedule: LambdaSchedule | None = None,
) -> list[RewardTerms]:
    """Every sample's reward terms, with the group-relative advantage filled in."""
    terms = [reward_terms(o, epoch=epoch, epochs=epochs, schedule=schedule) for o in outcomes]
    advantages = group_advantages([t.reward for t in terms])
    return [dataclasses.replace(t, advantage=a) for t, a in zip(terms, advantages, strict=True)]
