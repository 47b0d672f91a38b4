"""What agents do with what real models answer: the answers of a real llama.cpp server
(SmolLM2-135M, captured byte for byte by ``tests/fixtures/llamacpp/capture.py``) replayed
through the simulator's behaviour hook, so each case runs the same way every time.

The simulator stands in for the server only to replay; the orchestrator's own spawn and finish
calls around a replayed sub-agent are scripted here, as the test's setup.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine_support import FAST, StackFactory

from kswarm.sim.config import SimConfig
from kswarm.tools import control as ctl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "llamacpp"
SINGLE = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "real-answers"},
    "spec": {
        "task": "Find the city of the headquarters of Vaskora Analytics.",
        "mode": "single",
        "tools": ["search"],
        "orchestrator": {"maxSteps": 8},
        "subagents": {"maxSteps": 8},
        "retry": {"maxAttempts": 3, "initialIntervalSeconds": 0.01},
    },
}
SWARM = {**SINGLE, "spec": {**SINGLE["spec"], "mode": "swarm"}}


def captured(name: str) -> dict[str, Any]:
    """The assistant message of a captured answer, as the server sent it."""
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    assert record["status"] == 200
    return dict(record["response"]["choices"][0]["message"])


def role_of(body: dict[str, Any]) -> str:
    system = str((body.get("messages") or [{}])[0].get("content") or "")
    return "orchestrator" if "orchestrator of an agent swarm" in system else "agent"


def orchestrating(agent: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """A behaviour: the orchestrator spawns one sub-agent, then finishes with what it got
    back; every other agent answers as ``agent`` says."""

    def behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        if role_of(body) == "agent":
            return agent(body)
        results = [m for m in body["messages"] if m.get("role") == "tool"]
        if not results:
            call = {"name": ctl.SPAWN_SUBAGENTS, "arguments": {"tasks": [{"task": "Vaskora"}]}}
        else:
            call = {"name": ctl.FINISH, "arguments": {"answer": results[-1]["content"]}}
        return {"role": "assistant", "content": None, "tool_calls": [{"function": call}]}

    return behaviour


def replaying(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    message = captured(name)
    return lambda body: json.loads(json.dumps(message))


async def test_a_plain_answer_from_a_subagent_is_its_final_answer(
    make_stack: StackFactory,
) -> None:
    plain = captured("subagent_plain_answer")
    sim = SimConfig(time_scale=FAST, behaviour=orchestrating(replaying("subagent_plain_answer")))
    async with make_stack(sim=sim) as stack:
        inp = stack.job(SWARM)
        result = await stack.run(inp)
        agents = await stack.ledger.list_agents(inp.uid)
    (sub,) = [a for a in agents if a.role == "subagent"]
    assert (sub.status, sub.steps, sub.answer) == ("Succeeded", 1, plain["content"])
    assert result.phase == "Succeeded"
    assert json.loads(result.result)[0]["answer"] == plain["content"]


async def test_a_plain_answer_from_the_orchestrator_ends_the_job_with_that_answer(
    make_stack: StackFactory,
) -> None:
    plain = captured("orchestrator_plain_answer")
    sim = SimConfig(time_scale=FAST, behaviour=lambda body, rng: dict(plain))
    async with make_stack(sim=sim) as stack:
        inp = stack.job(SWARM)
        result = await stack.run(inp)
        job = await stack.ledger.get_job(inp.uid)
    assert (result.phase, result.reason, result.total_steps) == ("Succeeded", None, 1)
    assert job is not None and job.result == plain["content"]


async def test_arguments_that_are_not_json_go_back_as_tool_errors_until_the_budget_ends_it(
    make_stack: StackFactory,
) -> None:
    broken = captured("truncated_arguments")
    assert broken["tool_calls"][0]["function"]["arguments"] == "{"
    sim = SimConfig(time_scale=FAST, behaviour=lambda body, rng: dict(broken))
    async with make_stack(sim=sim) as stack:
        inp = stack.job(SINGLE, limits__maxToolErrors=2, limits__maxRepeatedCalls=100)
        result = await stack.run(inp)
        calls = await stack.ledger.list_tool_calls(inp.uid)
        (agent,) = await stack.ledger.list_agents(inp.uid)
        messages = await stack.ledger.get_messages(agent.id)
    assert result.phase == "Failed"
    assert str(result.reason).startswith(
        "ToolErrorBudgetExceeded: 3 refused tool calls, more than spec.limits.maxToolErrors (2)"
    )
    assert [(c.step, c.status) for c in calls] == [(1, "refused"), (2, "refused"), (3, "refused")]
    assert all("arguments are not valid JSON" in (c.error or "") for c in calls)
    # The model was told, after each of the first two steps.
    told = [m["content"] for m in messages if m.get("role") == "tool"]
    assert len(told) == 2 and all(t.startswith("error: arguments are not valid JSON") for t in told)


async def test_an_unknown_tool_written_in_the_text_is_read_and_refused_naming_the_tools(
    make_stack: StackFactory,
) -> None:
    sim = SimConfig(time_scale=FAST, behaviour=lambda body, rng: captured("call_in_content"))
    options = {"tool_calls_in_content": True}
    async with make_stack(sim=sim, pool_options=options) as stack:
        inp = stack.job(SINGLE, limits__maxToolErrors=1)
        result = await stack.run(inp)
        calls = await stack.ledger.list_tool_calls(inp.uid)
    assert result.phase == "Failed"
    assert str(result.reason).startswith("ToolErrorBudgetExceeded: 2 refused tool calls")
    assert [(c.tool, c.status, c.arguments) for c in calls] == [
        ("lookup_company", "refused", {"company": "Vaskora Analytics"})
    ] * 2
    assert calls[0].error == "unknown tool 'lookup_company'; your tools: search"


async def test_the_same_call_made_again_and_again_ends_the_subagent_with_repeated_tool_call(
    make_stack: StackFactory,
) -> None:
    sim = SimConfig(time_scale=FAST, behaviour=orchestrating(replaying("search_call")))
    async with make_stack(sim=sim) as stack:
        inp = stack.job(SWARM, limits__maxRepeatedCalls=3)
        result = await stack.run(inp)
        agents = await stack.ledger.list_agents(inp.uid)
        calls = await stack.ledger.list_tool_calls(inp.uid)
    (sub,) = [a for a in agents if a.role == "subagent"]
    assert (sub.status, sub.steps) == ("Failed", 3)
    assert str(sub.error).startswith('RepeatedToolCall: search({"query": "VASKORA_ACHTS_CITY_AZ"})')
    searches = [(c.step, c.status) for c in calls if c.agent_id == sub.id]
    assert searches == [(1, "succeeded"), (2, "succeeded"), (3, "refused")]
    assert result.phase == "Succeeded"  # the orchestrator carries on with what it got
    assert result.subagents_failed == 1


async def test_a_prompt_over_the_context_window_is_cut_once_then_fails_with_a_reason(
    make_stack: StackFactory,
) -> None:
    sim = SimConfig(time_scale=FAST, max_model_len=60, behaviour=lambda b, r: {"content": "ok"})
    async with make_stack(sim=sim) as stack:
        inp = stack.job(SINGLE)
        result = await stack.run(inp)
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Failed"
    assert "ContextLengthExceeded" in str(result.reason)
    assert "maximum context length is 60 tokens" in str(result.reason)
    assert [(c.status, c.http_status) for c in calls] == [("bad_request", 400)] * 2


async def test_a_server_error_is_retried_and_the_job_goes_on(make_stack: StackFactory) -> None:
    answers = iter([RuntimeError("llama.cpp: failed to parse the output"), None])

    def behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        fault = next(answers, None)
        if fault is not None:
            raise fault
        return {"role": "assistant", "content": "Vaskora Analytics is based in Oslo."}

    async with make_stack(sim=SimConfig(time_scale=FAST, behaviour=behaviour)) as stack:
        inp = stack.job(SINGLE)
        result = await stack.run(inp)
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert result.phase == "Succeeded"
    assert [(c.attempt, c.status) for c in calls] == [(1, "http_500"), (2, "ok")]
