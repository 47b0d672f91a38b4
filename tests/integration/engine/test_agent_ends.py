"""How a sub-agent's end reaches the ledger: with its final model step, or after it.

A sub-agent whose last step is final (it answers, or its step limit makes that turn final)
ends in the same write as that step (patch ``finish-in-step-v1``): its history has no
``finish_agent`` local activity. One ended any other way (a refusal, a budget, a failure) is
finished by ``finish_agent``, as before the patch. Either way the ledger shows its status,
steps, answer and end time."""

from __future__ import annotations

import random
from typing import Any

from engine_support import FAST, StackFactory, example
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from kswarm.sim.config import SimConfig
from kswarm.sim.scripted import scripted_behaviour
from kswarm.workflows.bookkeeping import answer_call
from kswarm.workflows.swarm import FINISH_IN_STEP

QUICK = example("quickstart")


def _markers(history: WorkflowHistory) -> str:
    """The decoded details of a history's markers (patches and local activities), as text."""
    texts = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            attrs = event.marker_recorded_event_attributes
            for payloads in attrs.details.values():
                texts += [p.data.decode() for p in payloads.payloads]
    return "\n".join(texts)


async def _subagents(stack: Any, uid: str) -> list[tuple[Any, str, list[dict[str, Any]]]]:
    """Each sub-agent's ledger row, its history's markers, and its messages."""
    out = []
    for agent in await stack.ledger.list_agents(uid):
        if agent.role != "subagent":
            continue
        history = await stack.client.get_workflow_handle(f"swarmjob-{agent.id}").fetch_history()
        out.append((agent, _markers(history), await stack.ledger.get_messages(agent.id)))
    return out


async def test_a_subagent_that_answers_ends_with_its_final_step(make_stack: StackFactory) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        agents = await _subagents(stack, inp.uid)
    assert result.phase == "Succeeded", result.reason
    assert len(agents) == result.subagents_spawned > 0
    for agent, markers, messages in agents:
        assert FINISH_IN_STEP in markers and "run_tools" in markers
        assert "finish_agent" not in markers
        last = messages[-1]
        assert last["role"] == "assistant" and not last.get("tool_calls")
        assert agent.status == "Succeeded" and agent.error is None
        assert agent.answer == (answer_call(last) or last["content"]) and agent.answer
        assert agent.finished_at is not None and agent.started_at is not None
        assert agent.steps == sum(1 for m in messages if m["role"] == "assistant")


def _never_answers(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Sub-agents search on every step, even when asked for an answer; the orchestrator is the
    scripted one."""
    names = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}
    if "spawn_subagents" in names:
        return scripted_behaviour(body, rng)
    steps = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
    call = {
        "id": f"s{steps}",
        "type": "function",
        "function": {"name": "search", "arguments": f'{{"query": "attempt {steps}"}}'},
    }
    return {"role": "assistant", "content": f"searching ({steps})", "tool_calls": [call]}


async def test_a_subagent_at_its_step_limit_ends_with_that_step(
    make_stack: StackFactory,
) -> None:
    """The step limit's turn is final whatever the model answers: its text is the answer."""
    async with make_stack(sim=SimConfig(time_scale=FAST, behaviour=_never_answers)) as stack:
        inp = stack.job(QUICK, subagents__maxSteps=2)
        await stack.run(inp)
        agents = await _subagents(stack, inp.uid)
    assert agents
    for agent, markers, _ in agents:
        assert "finish_agent" not in markers
        assert agent.status == "Succeeded" and agent.steps == 2
        assert agent.answer == "searching (1)"
        assert agent.finished_at is not None


def _refuses(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Sub-agents search once, then decline; the orchestrator is the scripted one."""
    names = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}
    if "spawn_subagents" in names:
        return scripted_behaviour(body, rng)
    if not any(m.get("role") == "assistant" for m in body.get("messages") or []):
        return _never_answers(body, rng)
    return {"role": "assistant", "content": None, "refusal": "I cannot help with that."}


async def test_a_subagent_that_refuses_is_finished_failed_after_its_step(
    make_stack: StackFactory,
) -> None:
    async with make_stack(sim=SimConfig(time_scale=FAST, behaviour=_refuses)) as stack:
        inp = stack.job(QUICK)
        await stack.run(inp)
        agents = await _subagents(stack, inp.uid)
    assert agents
    for agent, markers, _ in agents:
        assert "finish_agent" in markers
        assert agent.status == "Failed" and agent.steps == 2
        assert agent.error == "ModelRefused: I cannot help with that."
        assert agent.finished_at is not None
