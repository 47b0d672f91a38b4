"""Spawning, stages and critical steps on the real Temporal dev server, checked by hand."""

from __future__ import annotations

import pytest
from engine_support import StackFactory, example

from kswarm.llm.replicas import RouterSettings
from kswarm.sim.scripted import SEARCH_STEPS
from kswarm.sim.tasks import parse_task

QUICK = example("quickstart")
ITEMS = len(parse_task(QUICK["spec"]["task"]).items)  # type: ignore[union-attr]
SUB_STEPS = SEARCH_STEPS + 1  # searching steps, then the answer


async def test_swarm_spawns_one_subagent_per_item_and_counts_critical_steps(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        counters = await stack.ledger.job_counters(inp.uid)
        agents = await stack.ledger.list_agents(inp.uid)
        job = await stack.ledger.get_job(inp.uid)
        stages = await stack.ledger.list_stages(inp.uid)

    assert result.phase == "Succeeded", result.reason
    # Stage 1: the orchestrator spawns 4 sub-agents, each takes 3 search steps + 1 answer step.
    # Stage 2: the orchestrator finishes. Hand-computed: (1 + 4) + (1 + 0) = 6.
    assert [(s.main_steps, s.max_subagent_steps, s.subagents) for s in result.stages] == [
        (1, SUB_STEPS, ITEMS),
        (1, 0, 0),
    ]
    assert result.critical_steps == 1 + SUB_STEPS + 1
    assert [(s.index, s.main_steps, s.max_subagent_steps, s.subagents) for s in stages] == [
        (1, 1, SUB_STEPS, ITEMS),
        (2, 1, 0, 0),
    ]
    assert result.total_steps == 2 + ITEMS * SUB_STEPS
    assert result.speedup == pytest.approx(result.total_steps / result.critical_steps, rel=1e-3)
    assert result.subagents_spawned == result.subagents_succeeded == ITEMS
    assert result.quality == 1.0
    # Every sub-agent made 5 parallel searches in each of its 3 search steps, recorded once.
    assert counters.by_tool["search"] == ITEMS * SEARCH_STEPS * 5
    assert counters.llm_calls == result.total_steps
    subagents = [a for a in agents if a.role == "subagent"]
    assert len(subagents) == ITEMS and all(a.steps == SUB_STEPS for a in subagents)
    assert (
        job is not None and job.phase == "Succeeded" and job.critical_steps == result.critical_steps
    )


async def test_single_mode_is_one_agent_whose_every_step_is_critical(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        result = await stack.run(stack.job(QUICK, mode="single"))
    assert result.phase == "Succeeded", result.reason
    assert result.subagents_spawned == 0
    # 3 search steps per company, then one answer step.
    assert result.total_steps == ITEMS * SEARCH_STEPS + 1
    assert result.critical_steps == result.total_steps
    assert result.speedup == 1.0
    assert result.quality == 1.0


async def test_serial_orchestrator_spawns_one_stage_per_item(make_stack: StackFactory) -> None:
    async with make_stack() as stack:
        result = await stack.run(stack.job(QUICK, orchestrator__profile="serial"))
    assert result.phase == "Succeeded", result.reason
    assert [s.subagents for s in result.stages] == [1] * ITEMS + [0]
    assert result.critical_steps == ITEMS * (1 + SUB_STEPS) + 1
    assert result.quality == 1.0


async def test_deep_research_follows_the_chain_one_hop_per_stage(make_stack: StackFactory) -> None:
    from kswarm.sim.corpus import default_corpus

    deep = example("deep-research")
    start = parse_task(deep["spec"]["task"]).chain_start  # type: ignore[union-attr]
    hops = len(default_corpus().chain(str(start)))
    async with make_stack() as stack:
        result = await stack.run(stack.job(deep))
    assert result.phase == "Succeeded", result.reason
    assert [s.subagents for s in result.stages] == [1] * hops + [0]
    assert result.quality == 1.0
    # Nothing runs in parallel: the swarm's critical path is all of its steps.
    assert result.speedup == 1.0


@pytest.mark.parametrize("stream", [True, False])
async def test_a_streaming_pool_records_every_calls_time_to_first_token_and_model_time(
    make_stack: StackFactory, stream: bool
) -> None:
    async with make_stack(pool_options={"stream": stream}) as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Succeeded", result.reason
    assert result.quality == 1.0  # tool calls assembled from the stream as from a whole answer
    assert calls and all(c.status == "ok" for c in calls)
    # the simulator's modelled time of each answer, whole or streamed
    assert all(c.model_seconds is not None and c.model_seconds > 0 for c in calls)
    ttfts = [c.ttft_seconds for c in calls]
    if stream:
        assert all(
            t is not None and 0 < t <= (c.latency_seconds or 0)
            for t, c in zip(ttfts, calls, strict=True)
        )
    else:
        assert ttfts == [None] * len(calls)


async def test_each_agents_model_calls_stay_on_the_replica_that_holds_its_conversation(
    make_stack: StackFactory,
) -> None:
    """Every answer is stored with the replica that gave it, and the next step of the agent
    asks the router for that replica (``replica_hint``): all of an agent's calls land on one of
    the 4 replicas, where its conversation's prefix is cached.

    The router lets a hinted call go elsewhere when its replica is loaded beyond
    ``sticky_bound_factor`` x the mean (the router's unit tests cover that); in a job of a few
    agents on 4 replicas the mean is about 1, so one busy moment would move an agent. Here that
    bound is lifted so that only the hint decides, and the hash's own bound is 0, so a call
    without the hint leaves any replica that has a call in flight: the test fails if the hint
    is lost."""
    only_the_hint = RouterSettings(bound_factor=0.0, sticky_bound_factor=1e6)
    async with make_stack(replicas=4, router=only_the_hint) as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
        agents = {c.agent_id for c in calls}
        stored = {a: await stack.ledger.get_messages(a) for a in agents}
    assert result.phase == "Succeeded", result.reason
    served = {(c.agent_id, c.step): c.replica for c in calls if c.status == "ok"}
    for agent, messages in stored.items():
        answers = [m["_kswarm"] for m in messages if m.get("role") == "assistant"]
        assert answers, agent
        assert all(a["replica"] == served[agent, a["step"]] for a in answers), agent
        assert len({a["replica"] for a in answers}) == 1, f"{agent} moved between replicas"
