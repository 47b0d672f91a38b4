"""Budgets, deadlines, cancellation, refused tools and model faults, on the real dev server."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from engine_support import FAST, StackFactory, example
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from kswarm.sim.config import SimConfig
from kswarm.sim.scripted import scripted_behaviour
from kswarm.workflows import SwarmWorkflow

QUICK = example("quickstart")
FAST_RETRY = {"retry__initialIntervalSeconds": 0.01, "retry__maximumIntervalSeconds": 0.05}


async def test_tool_call_budget_ends_the_job_with_a_reason_and_no_call_beyond_it(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK, limits__maxToolCalls=22)
        result = await stack.run(inp)
        calls = await stack.ledger.list_tool_calls(inp.uid)
    assert result.phase == "Failed"
    assert result.reason == "BudgetExceeded: spec.limits.maxToolCalls (22) reached"
    searches = [c for c in calls if c.tool == "search"]
    assert sum(1 for c in searches if c.status == "succeeded") == 22
    refused = [c for c in searches if c.status == "refused"]
    assert refused and all("maxToolCalls" in (c.error or "") for c in refused)


async def test_token_budget_ends_the_job(make_stack: StackFactory) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK, limits__maxTokens=6000)
        result = await stack.run(inp)
        job = await stack.ledger.get_job(inp.uid)
    assert result.phase == "Failed"
    assert result.reason == "BudgetExceeded: spec.limits.maxTokens (6000) reached"
    assert job is not None and job.tokens_input + job.tokens_output >= 6000
    assert job.phase == "Failed"


async def test_deadline_ends_the_job_and_cancels_its_subagents(make_stack: StackFactory) -> None:
    async with make_stack(sim=SimConfig(time_scale=0.3)) as stack:
        inp = stack.job(QUICK, limits__deadlineSeconds=2)
        result = await stack.run(inp)
        agents = await stack.ledger.list_agents(inp.uid)
    assert result.phase == "Failed"
    assert result.reason == "DeadlineExceeded: spec.limits.deadlineSeconds (2s)"
    assert 2 <= result.wall_seconds < 30
    subagents = [a for a in agents if a.role == "subagent"]
    assert subagents and [a.status for a in subagents] == ["Cancelled"] * len(subagents)


async def test_cancel_reaches_every_child_and_keeps_partial_results(
    make_stack: StackFactory,
) -> None:
    async with make_stack(sim=SimConfig(time_scale=0.3)) as stack:
        inp = stack.job(QUICK)
        handle = await stack.start(inp)
        for _ in range(200):
            status = await handle.query(SwarmWorkflow.status)
            if status.subagents_running:
                break
            await asyncio.sleep(0.1)
        assert status.subagents_running > 0
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        agents = await stack.ledger.list_agents(inp.uid)
        job = await stack.ledger.get_job(inp.uid)
        subagents = [a for a in agents if a.role == "subagent"]
        for a in subagents:
            child = stack.client.get_workflow_handle(f"swarmjob-{a.id}")
            for _ in range(100):  # a child asked to cancel as the job closed may lag a moment
                described = await child.describe()
                if described.status != WorkflowExecutionStatus.RUNNING:
                    break
                await asyncio.sleep(0.1)
            assert described.status == WorkflowExecutionStatus.CANCELED
        agents = await stack.ledger.list_agents(inp.uid)
        subagents = [a for a in agents if a.role == "subagent"]
        messages = await stack.ledger.get_messages(subagents[0].id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert job is not None and job.phase == "Cancelled"
    assert all(a.status == "Cancelled" for a in subagents)
    assert len(messages) >= 2  # the conversation so far stays in the ledger


async def test_model_faults_are_retried_and_every_attempt_is_recorded(
    make_stack: StackFactory,
) -> None:
    sim = SimConfig(time_scale=FAST, fail_503_rate=0.25, fail_500_rate=0.05, seed=3)
    async with make_stack(sim=sim) as stack:
        inp = stack.job(QUICK, **FAST_RETRY, retry__maxAttempts=10)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Succeeded", result.reason
    outcomes = [c.status for c in calls]
    assert outcomes.count("ok") == result.total_steps
    assert any(o == "http_503" for o in outcomes)
    assert result.quality == 1.0


async def test_a_model_the_pool_does_not_serve_fails_the_job_without_retries(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK, orchestrator__model="no-such-model", **FAST_RETRY)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Failed"
    assert result.reason is not None and "ModelNotServed" in result.reason
    assert [c.status for c in calls] == ["model_not_served"]


def _rogue(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A model that first tries tools it must not use, then behaves."""
    if not any(m.get("role") == "assistant" for m in body.get("messages", [])):
        calls = [
            ("rm_rf", {"path": "/"}),
            ("write_note", {"text": "not allowed here"}),
            ("search", {"query": 42}),
        ]
        return {
            "role": "assistant",
            "content": "trying things",
            "tool_calls": [
                {
                    "id": f"c{i}",
                    "type": "function",
                    "function": {
                        "name": n,
                        "arguments": a if isinstance(a, str) else json.dumps(a),
                    },
                }
                for i, (n, a) in enumerate(calls)
            ],
        }
    return scripted_behaviour(body, rng)


async def test_unknown_and_disallowed_tools_are_refused_and_recorded_not_run(
    make_stack: StackFactory,
) -> None:
    async with make_stack(sim=SimConfig(time_scale=FAST, behaviour=_rogue)) as stack:
        inp = stack.job(QUICK, mode="single")
        result = await stack.run(inp)
        calls = await stack.ledger.get_tool_calls(f"{inp.uid}/single", 1)
    assert result.phase == "Succeeded", result.reason
    by_tool = {(c.tool, c.index): c for c in calls}
    assert by_tool[("rm_rf", 0)].status == "refused"
    assert "unknown tool 'rm_rf'" in (by_tool[("rm_rf", 0)].error or "")
    assert by_tool[("write_note", 1)].status == "refused"
    assert "allow-list" in (by_tool[("write_note", 1)].error or "")
    assert by_tool[("search", 2)].status == "refused"
    assert "must be string" in (by_tool[("search", 2)].error or "")


def _malformed(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A model whose tool-call arguments are never valid JSON."""
    call = {"id": "c0", "type": "function", "function": {"name": "search", "arguments": "{no"}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


async def test_malformed_tool_call_json_goes_back_to_the_model_then_ends_it_with_a_reason(
    make_stack: StackFactory,
) -> None:
    """Arguments that are not JSON are the model's mistake, not the server's: each call is
    refused with the reason as its tool result (the model call itself succeeded, once), and a
    model that keeps making it is ended, here by the repeated-call guard."""
    async with make_stack(sim=SimConfig(time_scale=FAST, behaviour=_malformed)) as stack:
        inp = stack.job(QUICK, mode="single", retry__maxAttempts=3, **FAST_RETRY)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
        tools = await stack.ledger.list_tool_calls(inp.uid)
    assert result.phase == "Failed"
    assert result.reason is not None and result.reason.startswith("RepeatedToolCall: search({no")
    assert [c.status for c in calls] == ["ok"] * 3  # one call per step, none retried
    assert len(tools) == 3
    assert all(t.status == "refused" and "not valid JSON" in (t.error or "") for t in tools)


async def test_wide_search_succeeds_under_503s_and_hung_requests_and_the_ledger_shows_retries(
    make_stack: StackFactory,
) -> None:
    sim = SimConfig(time_scale=FAST, fail_503_rate=0.10, hang_rate=0.02, seed=11)
    options = {"request_timeout_seconds": 1.0}
    async with make_stack(sim=sim, pool_options=options) as stack:
        inp = stack.job(example("wide-search"), **FAST_RETRY, retry__maxAttempts=8)
        result = await stack.run(inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Succeeded", result.reason
    assert result.subagents_succeeded == 100
    outcomes = [c.status for c in calls]
    assert outcomes.count("ok") == result.total_steps
    assert outcomes.count("http_503") >= 10
    assert outcomes.count("timeout") >= 1
    assert result.quality == 1.0
