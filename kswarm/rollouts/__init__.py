"""Rollouts for training: answer-key scorers, PARL rewards, serial-collapse metrics.

A trainer points at kswarm and gets groups of scored trajectories: each job is scored
(:mod:`~kswarm.rollouts.scorers`), its reward terms are kept apart
(:mod:`~kswarm.rollouts.rewards`) and its plan is checked for serial collapse
(:mod:`~kswarm.rollouts.collapse`).
"""

from kswarm.rollouts.collapse import CollapseMetrics, StageShape, collapse_metrics
from kswarm.rollouts.rewards import (
    LambdaSchedule,
    RewardTerms,
    RolloutOutcome,
    group_advantages,
    is_success,
    reward_terms,
)

__all__ = [
    "CollapseMetrics",
    "LambdaSchedule",
    "RewardTerms",
    "RolloutOutcome",
    "StageShape",
    "collapse_metrics",
    "group_advantages",
    "is_success",
    "reward_terms",
]
