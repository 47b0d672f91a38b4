"""A simulated model whose agents call the tools their task names (for the MCP tests).

A task is lines ``CALL TOOL {json arguments}``. The orchestrator (offered ``spawn_subagents``)
spawns one sub-agent per line, then finishes with their answers; a sub-agent or a single agent
makes the calls of its task in one step, then answers with what the tools said. It reads only
what a model would see: the messages and the offered tools.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

_CALL = re.compile(r"^CALL (\S+) (\{.*\})\s*$", re.M)


def _tool_call(i: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def call_named_tools(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    messages = body.get("messages") or []
    offered = {t["function"]["name"] for t in body.get("tools") or []}
    task = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
    calls = [(name, json.loads(args)) for name, args in _CALL.findall(task)]
    answered = any(m.get("role") == "assistant" for m in messages)
    results = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
    if "spawn_subagents" in offered:
        if not answered:
            tasks = [
                {"name": f"caller-{i}", "task": f"CALL {n} {json.dumps(a)}"}
                for i, (n, a) in enumerate(calls)
            ]
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [_tool_call(0, "spawn_subagents", {"tasks": tasks})],
            }
        answer = " | ".join(results)
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [_tool_call(0, "finish", {"answer": answer})],
        }
    if not answered:
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [_tool_call(i, n, a) for i, (n, a) in enumerate(calls)],
        }
    return {"role": "assistant", "content": "\n".join(results), "tool_calls": []}
