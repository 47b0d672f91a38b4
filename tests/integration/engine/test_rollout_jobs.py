"""Rollout measures of real jobs: serial collapse flagged, a critical-steps budget, answer keys.

The simulator's scripted orchestrator plays a parallel plan (profile ``swarm``) and a collapsed
one (profile ``serial``) of the same quickstart task, on the real Temporal dev server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_support import StackFactory, example

from kswarm.sim.corpus import default_corpus
from kswarm.sim.scripted import SEARCH_STEPS
from kswarm.sim.tasks import parse_task

QUICK = example("quickstart")
TASK = parse_task(QUICK["spec"]["task"])
assert TASK is not None
ITEMS = len(TASK.items)
SUB_STEPS = SEARCH_STEPS + 1
SWARM_CRITICAL = 1 + SUB_STEPS + 1


async def _report(stack: Any, uid: str) -> dict[str, Any]:
    await stack.ledger.flush()
    job = await stack.ledger.get_job(uid)
    assert job is not None and job.report is not None
    return dict(job.report)


async def test_the_serial_profile_is_flagged_as_collapse_and_the_swarm_is_not(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        swarm = stack.job(QUICK)
        serial = stack.job(QUICK, orchestrator__profile="serial")
        await stack.run(swarm)
        await stack.run(serial)
        swarm_report = await _report(stack, swarm.uid)
        serial_report = await _report(stack, serial.uid)

    s, c = swarm_report["collapse"], serial_report["collapse"]
    assert (s["serialCollapse"], c["serialCollapse"]) == (False, True)
    assert s["subagentsPerStage"] == [ITEMS] and c["subagentsPerStage"] == [1] * ITEMS
    assert (s["singleSubagentStages"], c["singleSubagentStages"]) == (0, ITEMS)
    # Best for 4 items with 4 slots and 4-step sub-agents: 1 + 4 + 1 = 6, what the swarm took.
    assert s["bestCriticalSteps"] == c["bestCriticalSteps"] == SWARM_CRITICAL
    assert s["criticalStepsRatio"] == 1.0
    assert c["criticalSteps"] == ITEMS * (1 + SUB_STEPS) + 1
    assert swarm_report["finishedPerStage"] == [ITEMS]
    assert serial_report["finishedPerStage"] == [1] * ITEMS
    assert swarm_report["evaluation"]["success"] and serial_report["evaluation"]["success"]


async def test_a_critical_steps_budget_fails_the_serial_plan_and_not_the_swarm(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        swarm = await stack.run(stack.job(QUICK, limits__maxCriticalSteps=SWARM_CRITICAL))
        serial_inp = stack.job(
            QUICK, orchestrator__profile="serial", limits__maxCriticalSteps=SWARM_CRITICAL
        )
        serial = await stack.run(serial_inp)
        report = await _report(stack, serial_inp.uid)
    assert swarm.phase == "Succeeded", swarm.reason
    assert serial.phase == "Failed"
    assert serial.reason is not None and serial.reason.startswith(
        f"BudgetExceeded: spec.limits.maxCriticalSteps ({SWARM_CRITICAL})"
    )
    # Stage 1 (1 + 4 = 5 steps) fits; stage 2 passes the budget and the job stops there.
    assert serial.critical_steps == 2 * (1 + SUB_STEPS)
    assert report["evaluation"]["success"] is False


async def test_an_item_f1_answer_key_scores_the_job(make_stack: StackFactory) -> None:
    corpus = default_corpus()
    rows = [
        {"entity": name, **{a: corpus.by_name[name].fact(a) for a in TASK.attributes}}
        for name in TASK.items
    ]
    rows[0] = {**rows[0], TASK.attributes[0]: "not what the corpus says"}
    key = {"scorer": "item-f1", "answerKey": {"rows": json.loads(json.dumps(rows))}}
    async with make_stack() as stack:
        result = await stack.run(stack.job(QUICK, evaluation=key))
    # One of 12 key cells disagrees with the (right) answer: P = R = 11/12.
    assert result.quality == round(11 / 12, 6)


async def test_a_user_scorer_scores_the_job_and_a_broken_one_is_named(
    make_stack: StackFactory,
) -> None:
    # Two of the four quickstart companies plus one the task never asked for: the answer
    # names 2 of the key's 3 entities.
    rows = [{"entity": n} for n in [*TASK.items[:2], "Nowhere Holdings"]]
    good = {"scorer": "user", "function": "engine_scorers:share_of_entities"}
    bad = {"scorer": "user", "function": "engine_scorers:broken"}
    async with make_stack() as stack:
        scored = await stack.run(stack.job(QUICK, evaluation={**good, "answerKey": {"rows": rows}}))
        broken_inp = stack.job(QUICK, evaluation=bad)
        broken = await stack.run(broken_inp)
        report = await _report(stack, broken_inp.uid)
    assert scored.quality == pytest.approx(2 / 3)
    assert broken.phase == "Succeeded" and broken.quality == 0.0
    assert "this scorer is broken on purpose" in report["evaluation"]["error"]
    assert report["evaluation"]["success"] is True  # succeeded, and no threshold was set
