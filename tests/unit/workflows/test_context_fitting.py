"""fit_context: mask the oldest tool results first, then drop the oldest steps, keep the rest."""

from __future__ import annotations

from typing import Any

from kswarm.workflows.prompts import estimate_tokens, fit_context, masked_stub


def step(n: int, tool: str = "search", size: int = 300) -> list[dict[str, Any]]:
    call = {"id": f"c{n}", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    return [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": "x" * size},
    ]


HEAD = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the task"}]
CONVERSATION = HEAD + step(1) + step(2) + step(3) + step(4)


def test_a_prompt_under_the_budget_is_left_alone() -> None:
    fit = fit_context(CONVERSATION, None, budget=10_000, keep_steps=2)
    assert (fit.messages, fit.masked, fit.dropped) == (CONVERSATION, 0, 0)


def test_masks_the_oldest_results_first_and_only_as_many_as_it_takes() -> None:
    whole = estimate_tokens(CONVERSATION, None)
    fit = fit_context(CONVERSATION, None, budget=whole - 50, keep_steps=2)
    assert (fit.masked, fit.dropped) == (1, 0)
    assert fit.messages[3]["content"] == masked_stub("search")
    assert fit.messages[5]["content"] == "x" * 300
    assert CONVERSATION[3]["content"] == "x" * 300  # the input is not changed


def test_drops_the_oldest_steps_keeping_the_task_and_the_latest_steps() -> None:
    fit = fit_context(CONVERSATION, None, budget=250, keep_steps=2)
    assert fit.messages[:2] == HEAD
    assert fit.dropped == 4 and fit.masked == 2
    assert "4 earlier messages" in fit.messages[2]["content"]
    assert fit.messages[3:] == CONVERSATION[6:]


def test_never_masks_the_answers_of_subagents() -> None:
    conversation = HEAD + step(1, tool="spawn_subagents") + step(2) + step(3)
    fit = fit_context(conversation, None, budget=10, keep_steps=1)
    assert all(m["content"] != masked_stub("spawn_subagents") for m in fit.messages)


def test_counts_the_tools_in_the_estimate() -> None:
    tools = [{"type": "function", "function": {"name": "t", "description": "d" * 900}}]
    assert estimate_tokens(HEAD, tools) > estimate_tokens(HEAD, None) + 290
