"""What an agent's model sees: its conversation from the ledger, shaped into a prompt.

The ledger keeps every message whole. The prompt masks old observations (tool results older
than ``VISIBLE_TOOL_STEPS`` steps become ``[elided]``, the agent's own notes stay) and cuts old
reasoning, so a long-running agent's prompt stays bounded; the tool messages that answer the
previous step's calls are rebuilt from that step's ledger rows.
"""

from __future__ import annotations

from typing import Any

from kswarm.tools import control as ctl
from kswarm.tools.results import MODEL_RESULT_CHARS, for_model, truncate

__all__ = [
    "OLD_REASONING_CHARS",
    "VISIBLE_TOOL_STEPS",
    "last_replica",
    "pending_tool_messages",
    "prompt_messages",
    "step_of",
]

VISIBLE_TOOL_STEPS = 3
"""Tool results older than this many steps are elided from the prompt (observation masking);
the agent's own notes stay. They remain whole in the ledger."""
OLD_REASONING_CHARS = 300
"""Assistant text older than that horizon is cut to this many characters (its head: notes)."""


def public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def step_of(message: dict[str, Any]) -> int | None:
    meta = message.get("_kswarm")
    return int(meta["step"]) if isinstance(meta, dict) and "step" in meta else None


def last_replica(history: list[dict[str, Any]]) -> str | None:
    """The replica that answered the agent's last model call: its prefix cache holds the
    conversation, so the next call should go there (``ChatRequest.replica_hint``)."""
    for m in reversed(history):
        meta = m.get("_kswarm")
        if m.get("role") == "assistant" and isinstance(meta, dict):
            replica = meta.get("replica")
            return replica if isinstance(replica, str) else None
    return None


def prompt_messages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = [s for m in history if (s := step_of(m)) is not None]
    horizon = (max(steps) - VISIBLE_TOOL_STEPS + 1) if steps else 0
    out: list[dict[str, Any]] = []
    for m in history:
        msg = public(m)
        meta = m.get("_kswarm")
        if (
            msg.get("role") == "tool"
            and isinstance(meta, dict)
            and meta.get("tool") not in ctl.CONTROL_TOOLS
            and int(meta.get("after_step", horizon)) < horizon
        ):
            msg = {**msg, "content": "[elided]"}
        elif msg.get("role") == "assistant" and (step := step_of(m)) is not None and step < horizon:
            content = str(msg.get("content") or "")
            if len(content) > OLD_REASONING_CHARS:
                msg = {**msg, "content": content[:OLD_REASONING_CHARS] + " [...]"}
        out.append(msg)
    return out


def pending_tool_messages(history: list[dict[str, Any]], calls: list[Any]) -> list[dict[str, Any]]:
    """Tool messages answering the previous step's calls, from that step's ledger rows."""
    last = history[-1] if history else {}
    prev = step_of(last)
    if last.get("role") != "assistant" or prev is None or not last.get("tool_calls"):
        return []
    by_index = {c.index: c for c in calls}
    out = []
    for i, call in enumerate(last.get("tool_calls") or []):
        row = by_index.get(i)
        if row is None or row.status in ("pending", "started"):
            content = "error: the call did not complete"
        elif row.status == "succeeded":
            # A tool's result is cut for the prompt; the orchestrator's controls (its
            # sub-agents' answers) reach it whole, as they are what it works from.
            whole = row.tool in ctl.CONTROL_TOOLS
            content = for_model(row.result, limit=None if whole else MODEL_RESULT_CHARS)
        else:
            content = truncate(f"error: {row.error or row.status}")
        out.append(
            {
                "role": "tool",
                "tool_call_id": call.get("id", f"call_{i}"),
                "content": content,
                "_kswarm": {"after_step": prev, "tool": row.tool if row else ""},
            }
        )
    return out
