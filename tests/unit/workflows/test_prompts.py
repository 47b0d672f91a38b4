"""What the model sees: observation masking, old reasoning cut, and the previous step's results.

The tool-call rows are the ledger's own ``ToolCall`` model, built without a database: the
prompt only reads their attributes, as it reads the rows of ``Ledger.get_conversation``.
"""

from __future__ import annotations

from typing import Any

import pytest

from kswarm.ledger.models import ToolCall
from kswarm.tools import control as ctl
from kswarm.workflows.prompts import (
    OLD_REASONING_CHARS,
    VISIBLE_TOOL_STEPS,
    last_replica,
    pending_tool_messages,
    prompt_messages,
    step_of,
)


def assistant(
    step: int, content: str = "", *, calls: int = 0, replica: str = "r0"
) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "_kswarm": {"step": step, "replica": replica},
    }
    if calls:
        msg["tool_calls"] = [
            {"id": f"c{step}_{i}", "type": "function", "function": {"name": "search"}}
            for i in range(calls)
        ]
    return msg


def tool(after_step: int, content: str, name: str = "search") -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": f"c{after_step}",
        "content": content,
        "_kswarm": {"after_step": after_step, "tool": name},
    }


def conversation(last_step: int) -> list[dict[str, Any]]:
    """A system prompt, a user task, then steps 0..last_step each followed by one tool result."""
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a researcher."},
        {"role": "user", "content": "the task"},
    ]
    for s in range(last_step + 1):
        history.append(assistant(s, f"thinking at step {s} " + "x" * 400, calls=1))
        history.append(tool(s, f"result of step {s}"))
    return history


def test_private_metadata_never_reaches_the_model() -> None:
    out = prompt_messages(conversation(1))
    assert all("_kswarm" not in m for m in out)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "tool", "assistant", "tool"]


def masked(content: str) -> bool:
    """Whether a tool result was replaced by a stub (its exact words are the prompt's choice;
    what matters is that the result itself is gone)."""
    return bool(content) and "result of step" not in content


def test_tool_results_older_than_the_visible_steps_are_masked() -> None:
    last = VISIBLE_TOOL_STEPS + 2  # steps 0..5 with 3 visible: 3, 4, 5 stay whole
    out = prompt_messages(conversation(last))
    results = [m["content"] for m in out if m["role"] == "tool"]
    horizon = last - VISIBLE_TOOL_STEPS + 1
    assert all(masked(r) for r in results[:horizon]), results
    assert results[horizon:] == [f"result of step {s}" for s in range(horizon, last + 1)]


def test_control_tool_results_are_never_masked() -> None:
    history = conversation(VISIBLE_TOOL_STEPS + 2)
    history[3] = tool(0, "spawned 3 sub-agents", name=ctl.SPAWN_SUBAGENTS)
    out = prompt_messages(history)
    assert out[3]["content"] == "spawned 3 sub-agents"
    assert masked(out[5]["content"])


def test_old_reasoning_is_cut_to_its_head_and_recent_reasoning_stays_whole() -> None:
    history = conversation(VISIBLE_TOOL_STEPS)  # steps 0..3: step 0 is before the horizon
    out = prompt_messages(history)
    old, recent = out[2]["content"], out[4]["content"]
    assert old == history[2]["content"][:OLD_REASONING_CHARS] + " [...]"
    assert recent == history[4]["content"]


def test_a_short_prompt_is_left_as_it_is_and_the_history_is_not_changed() -> None:
    history = conversation(1)
    before = [dict(m) for m in history]
    out = prompt_messages(history)
    assert [m["content"] for m in out] == [m["content"] for m in history]
    assert history == before


def test_the_ledger_keeps_what_the_prompt_masks() -> None:
    history = conversation(VISIBLE_TOOL_STEPS + 1)
    prompt_messages(history)
    assert history[3]["content"] == "result of step 0"


@pytest.mark.parametrize(
    ("message", "step"),
    [
        pytest.param({"role": "assistant", "_kswarm": {"step": 4}}, 4, id="assistant"),
        pytest.param({"role": "assistant", "_kswarm": {"step": "7"}}, 7, id="string-step"),
        pytest.param({"role": "tool", "_kswarm": {"after_step": 4}}, None, id="tool-result"),
        pytest.param({"role": "user", "content": "task"}, None, id="no-metadata"),
        pytest.param({"role": "user", "_kswarm": "step"}, None, id="metadata-not-a-mapping"),
    ],
)
def test_step_of_reads_the_step_a_message_was_made_in(
    message: dict[str, Any], step: int | None
) -> None:
    assert step_of(message) == step


def test_last_replica_is_the_replica_of_the_last_model_answer() -> None:
    history = [assistant(0, replica="r1"), tool(0, "x"), assistant(1, replica="r2"), tool(1, "y")]
    assert last_replica(history) == "r2"
    assert last_replica(history[:2]) == "r1"


def test_last_replica_is_none_before_any_model_answer_or_without_one_recorded() -> None:
    assert last_replica([]) is None
    assert last_replica([{"role": "user", "content": "task"}]) is None
    assert last_replica([{"role": "assistant", "_kswarm": {"step": 0}}]) is None


def call(index: int, status: str, **fields: Any) -> ToolCall:
    return ToolCall(index=index, tool="search", status=status, **fields)


def test_pending_tool_messages_answer_each_call_of_the_previous_step_in_order() -> None:
    history = [{"role": "user", "content": "task"}, assistant(2, calls=4)]
    calls = [
        call(0, "succeeded", result={"hits": [1, 2]}),
        call(1, "failed", error="timeout after 30s"),
        call(2, "refused"),
        call(3, "started"),
    ]
    out = pending_tool_messages(history, list(reversed(calls)))
    assert [m["tool_call_id"] for m in out] == ["c2_0", "c2_1", "c2_2", "c2_3"]
    assert [m["content"] for m in out] == [
        '{"hits":[1,2]}',
        "error: timeout after 30s",
        "error: refused",
        "error: the call did not complete",
    ]
    assert all(m["role"] == "tool" and m["_kswarm"]["after_step"] == 2 for m in out)
    assert {m["_kswarm"]["tool"] for m in out} == {"search"}


def test_a_call_with_no_ledger_row_is_answered_as_not_completed() -> None:
    out = pending_tool_messages([assistant(0, calls=1)], [])
    assert out == [
        {
            "role": "tool",
            "tool_call_id": "c0_0",
            "content": "error: the call did not complete",
            "_kswarm": {"after_step": 0, "tool": ""},
        }
    ]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([], id="empty"),
        pytest.param([{"role": "user", "content": "task"}], id="last-is-user"),
        pytest.param([assistant(0)], id="assistant-without-calls"),
        pytest.param([assistant(0, calls=1), tool(0, "done")], id="already-answered"),
        pytest.param([{"role": "assistant", "tool_calls": [{"id": "x"}]}], id="no-step"),
    ],
)
def test_nothing_is_pending_unless_the_last_message_is_a_model_step_with_calls(
    history: list[dict[str, Any]],
) -> None:
    assert pending_tool_messages(history, [call(0, "succeeded", result=1)]) == []
