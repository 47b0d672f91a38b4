"""The scripted worker after the platform's context management dropped its oldest steps: it goes
on from its latest visible searches (as a model reading its own recent calls would) instead of
counting the turns it still sees and searching again what it searched already."""

from __future__ import annotations

import json
import random
from typing import Any

from kswarm.sim.scripted import SEARCH_STEPS, scripted_behaviour
from kswarm.workflows.prompts import fit_context

ITEMS = [f"Company{i} Holdings" for i in range(8)]
TASK = "Find facts about these companies.\nAttributes: founded, ceo\nItems:\n" + "\n".join(
    f"- {item}" for item in ITEMS
)
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {}}}]


def _searched(message: dict[str, Any]) -> list[str]:
    return [json.loads(c["function"]["arguments"])["query"] for c in message["tool_calls"]]


def _worked(turns: int) -> list[dict[str, Any]]:
    """A worker's conversation after ``turns`` turns of the scripted model."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You research companies."},
        {"role": "user", "content": TASK},
    ]
    rng = random.Random(7)
    for _ in range(turns):
        answer = scripted_behaviour({"messages": messages, "tools": TOOLS}, rng)
        messages.append(answer)
        for call in answer["tool_calls"]:
            result = {"results": [{"text": "nothing found " * 40}]}
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
            )
    return messages


def test_after_dropped_steps_the_worker_searches_on_where_it_was() -> None:
    for turns in (7, 9, 10, 14):  # in the middle of a company's searches, and at its end
        messages = _worked(turns)
        fit = fit_context(messages, TOOLS, budget=1500, keep_steps=2)
        assert fit.dropped > 0, "the test needs a prompt with steps dropped"

        whole = scripted_behaviour({"messages": messages, "tools": TOOLS}, random.Random(1))
        cut = scripted_behaviour({"messages": fit.messages, "tools": TOOLS}, random.Random(1))

        entity, sub = divmod(turns, SEARCH_STEPS)
        assert _searched(cut) == _searched(whole), turns
        assert all(q.startswith(ITEMS[entity]) for q in _searched(cut)), (turns, sub)


def test_without_dropped_steps_the_worker_counts_its_turns() -> None:
    messages = _worked(4)
    answer = scripted_behaviour({"messages": messages, "tools": TOOLS}, random.Random(1))
    assert all(q.startswith(ITEMS[1]) for q in _searched(answer))
