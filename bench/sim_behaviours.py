"""Simulator behaviours of the benchmarks, importable by ``kswarm sim --behaviour``."""

from __future__ import annotations

import json
import random
from typing import Any


def noop_swarm(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Sub-agents: 3 steps of 5 no-op calls, then an answer; the orchestrator: spawn 100."""
    messages = body.get("messages") or []
    names = {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}
    turns = sum(1 for m in messages if m.get("role") == "assistant")

    def call(name: str, args: dict[str, Any], i: int) -> dict[str, Any]:
        return {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }

    if "spawn_subagents" in names:
        if turns == 0:
            tasks = [{"name": f"n{i}", "task": f"no-op work {i}"} for i in range(100)]
            return {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("spawn_subagents", {"tasks": tasks}, 0)],
            }
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("finish", {"answer": "done"}, 0)],
        }
    if turns < 3:
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [call("noop", {}, i) for i in range(5)],
        }
    return {"role": "assistant", "content": "done", "tool_calls": []}
