"""Serial collapse, measured: did the orchestrator run a parallelisable task one at a time?

A weak orchestrator "collapses" to a serial plan: it spawns one sub-agent per step, so the
critical path grows with the number of items while a swarm's stays flat. Per job:

* ``subagentsPerStage``: sub-agents spawned by each stage that spawned any;
* ``singleSubagentStages``: stages that spawned exactly one;
* ``bestCriticalSteps``: the shortest critical path the task's items allow with the job's own
  sub-agents: ``ceil(items / maxConcurrent) · (1 + longest) + 1`` (each wave is one
  orchestrator step plus its longest sub-agent, then one step to finish), where ``longest`` is
  the most steps any of the job's sub-agents took;
* ``criticalStepsRatio``: the job's critical steps over that best;
* ``serialCollapse``: the task had at least two independent items and no stage ran more than one
  sub-agent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CollapseMetrics", "StageShape", "collapse_metrics"]


@dataclass(frozen=True)
class StageShape:
    subagents: int
    max_subagent_steps: int


@dataclass(frozen=True, kw_only=True)
class CollapseMetrics:
    subagents_per_stage: tuple[int, ...]
    single_subagent_stages: int
    critical_steps: int
    best_critical_steps: int | None
    critical_steps_ratio: float | None
    items: int | None
    serial_collapse: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "subagentsPerStage": list(self.subagents_per_stage),
            "singleSubagentStages": self.single_subagent_stages,
            "criticalSteps": self.critical_steps,
            "bestCriticalSteps": self.best_critical_steps,
            "criticalStepsRatio": self.critical_steps_ratio,
            "items": self.items,
            "serialCollapse": self.serial_collapse,
        }


def collapse_metrics(
    stages: Sequence[StageShape],
    *,
    critical_steps: int,
    items: int | None,
    max_concurrent: int,
) -> CollapseMetrics:
    """The collapse metrics of a job from its stages and its task's independent ``items``
    (``None`` when unknown: then nothing is flagged and there is no best)."""
    per_stage = tuple(s.subagents for s in stages if s.subagents > 0)
    longest = max((s.max_subagent_steps for s in stages), default=0)
    best = None
    ratio = None
    if items:
        waves = math.ceil(items / max(1, max_concurrent))
        best = waves * (1 + longest) + 1
        ratio = round(critical_steps / best, 3)
    return CollapseMetrics(
        subagents_per_stage=per_stage,
        single_subagent_stages=sum(1 for n in per_stage if n == 1),
        critical_steps=critical_steps,
        best_critical_steps=best,
        critical_steps_ratio=ratio,
        items=items,
        serial_collapse=bool(items and items >= 2 and max(per_stage, default=0) <= 1),
    )
