"""Serial-collapse metrics against hand-computed values."""

from __future__ import annotations

from kswarm.rollouts import StageShape, collapse_metrics


def test_a_swarm_plan_is_not_flagged_and_meets_the_best_critical_path() -> None:
    # One wave of 4 sub-agents of 3 steps, then a finishing step: 1 + 3 + 1 = 5 = best.
    m = collapse_metrics(
        [StageShape(4, 3), StageShape(0, 0)], critical_steps=5, items=4, max_concurrent=4
    )
    assert m.subagents_per_stage == (4,)
    assert m.single_subagent_stages == 0
    assert m.best_critical_steps == 5
    assert m.critical_steps_ratio == 1.0
    assert not m.serial_collapse


def test_one_sub_agent_per_stage_on_a_wide_task_is_serial_collapse() -> None:
    # Four stages of (1 + 3) then a finishing step: 17 critical steps against a best of 5.
    stages = [StageShape(1, 3)] * 4 + [StageShape(0, 0)]
    m = collapse_metrics(stages, critical_steps=17, items=4, max_concurrent=4)
    assert m.single_subagent_stages == 4
    assert m.critical_steps_ratio == 3.4
    assert m.serial_collapse
    assert m.to_dict()["serialCollapse"] is True


def test_a_one_item_task_cannot_collapse_and_unknown_width_has_no_best() -> None:
    chain = [StageShape(1, 2)] * 3
    assert not collapse_metrics(chain, critical_steps=9, items=1, max_concurrent=4).serial_collapse
    unknown = collapse_metrics(chain, critical_steps=9, items=None, max_concurrent=4)
    assert unknown.best_critical_steps is None
    assert not unknown.serial_collapse


def test_more_items_than_slots_need_several_waves() -> None:
    m = collapse_metrics([StageShape(10, 2)], critical_steps=4, items=10, max_concurrent=4)
    assert m.best_critical_steps == 3 * (1 + 2) + 1
