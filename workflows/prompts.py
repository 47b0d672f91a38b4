"""What an agent's model sees: its conversation from the ledger, shaped into a prompt.

The ledger keeps every message whole. The prompt masks old observations (tool results older
than ``VISIBLE_TOOL_STEPS`` steps become a stub, the agent's own notes stay) and cuts old
reasoning, so a long-running agent's prompt stays bounded; the tool messages that answer the
previous step's calls are rebuilt from that step's ledger rows.

Near the pool's context window :func:`fit_context` goes further (context management, as
Kimi K2.5's discard strategy): it masks every tool result but those of the latest steps, each
replaced by a one-line stub that names the call to make again, and if the prompt is still too
long it drops the oldest steps whole, keeping the system prompt, the task and the latest turns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kswarm.tools import control as ctl
from kswarm.tools.results import MODEL_RESULT_CHARS, for_model, truncate

__all__ = [
    "CHARS_PER_TOKEN",
    "OLD_REASONING_CHARS",
    "VISIBLE_TOOL_STEPS",
    "ContextFit",
    "estimate_tokens",
    "fit_context",
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
CHARS_PER_TOKEN = 3
"""Prompt size estimate: JSON text runs 3 to 4 characters a token; the low end keeps the
estimate on the safe side of the window."""


def public(message: dict[str, Any]) -> dict[str, Any]:
    """What the server gets of a stored message: no kswarm metadata, and tool-call arguments
    that are JSON objects (a server may parse them to render its template; arguments the
    model broke were answered with a tool error and are sent as ``{}``)."""
    out = {k: v for k, v in message.items() if not k.startswith("_")}
    calls = out.get("tool_calls")
    if calls and not all(_json_object(c) for c in calls):
        out["tool_calls"] = [
            c if _json_object(c) else {**c, "function": {**c["function"], "arguments": "{}"}}
            for c in calls
        ]
    return out


def _json_object(call: Any) -> bool:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return True
    try:
        return isinstance(json.loads(function.get("arguments") or "{}"), dict)
    except (ValueError, TypeError):
        return False


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


def masked_stub(tool: str) -> str:
    """What a masked tool result says instead of itself: how to get it again."""
    return f"[result masked to save context: call {tool} again with the same arguments to see it]"


def prompt_messages(history: list[dict[str, Any]], *, masking: bool = True) -> list[dict[str, Any]]:
    """The prompt of an agent's next step; ``masking=False`` (``spec.context.enabled: false``)
    sends the conversation as the ledger holds it."""
    if not masking:
        return [public(m) for m in history]
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
            msg = {**msg, "content": masked_stub(str(meta.get("tool") or "the tool"))}
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


def estimate_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    """Prompt tokens of ``messages`` and ``tools``, estimated from their JSON text."""
    text = json.dumps(messages, separators=(",", ":"))
    if tools:
        text += json.dumps(tools, separators=(",", ":"))
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass
class ContextFit:
    messages: list[dict[str, Any]]
    masked: int = 0
    """Tool results replaced by a stub."""
    dropped: int = 0
    """Messages of the oldest steps left out."""
    tokens: int = 0
    """Estimated prompt tokens after the cut."""


def _turns(messages: list[dict[str, Any]]) -> tuple[int, list[list[int]]]:
    """Index where the steps begin (after the system prompt and the task) and the steps, each
    an assistant message with the tool results that answer it."""
    head = 0
    while head < len(messages) and messages[head].get("role") in ("system", "user"):
        head += 1
    head = max(head, min(2, len(messages)))
    turns: list[list[int]] = []
    for i in range(head, len(messages)):
        if messages[i].get("role") == "assistant" or not turns:
            turns.append([i])
        else:
            turns[-1].append(i)
    return head, turns


def fit_context(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    *,
    budget: int,
    keep_steps: int,
) -> ContextFit:
    """``messages`` cut to ``budget`` estimated tokens: first the tool results of the oldest
    steps are masked, one step after the other (not the answers of sub-agents, which cannot
    be fetched again), then the oldest steps are dropped whole; never
    the system prompt, the task or the latest ``keep_steps`` steps. The result may still be
    over the budget when what is kept is bigger; the server then says so."""
    fit = ContextFit(messages=list(messages), tokens=estimate_tokens(messages, tools))
    if fit.tokens <= budget:
        return fit
    head, turns = _turns(fit.messages)
    old = turns[:-keep_steps] if keep_steps < len(turns) else []
    names = {
        str(c.get("id")): str((c.get("function") or {}).get("name") or "the tool")
        for m in fit.messages
        for c in (m.get("tool_calls") or [])
        if isinstance(c, dict)
    }
    for turn in old:  # the oldest first, only as many as it takes
        for i in turn:
            m = fit.messages[i]
            name = names.get(str(m.get("tool_call_id")), "the tool")
            if name in ctl.CONTROL_TOOLS:
                continue  # sub-agents' answers: calling again would run them again
            stub = masked_stub(name)
            if m.get("role") == "tool" and m.get("content") != stub:
                fit.messages[i] = {**m, "content": stub}
                fit.masked += 1
        fit.tokens = estimate_tokens(fit.messages, tools)
        if fit.tokens <= budget:
            return fit
    if not old:
        return fit
    drop = 0
    while drop < len(old) and fit.tokens > budget:
        drop += 1
        cut = old[drop - 1][-1] + 1
        kept = fit.messages[:head] + fit.messages[cut:]
        fit.tokens = estimate_tokens(kept, tools)
    cut = old[drop - 1][-1] + 1
    fit.dropped = cut - head
    note = {
        "role": "user",
        "content": f"[{fit.dropped} earlier messages of this task were dropped to save context]",
    }
    fit.messages = [*fit.messages[:head], note, *fit.messages[cut:]]
    fit.tokens = estimate_tokens(fit.messages, tools)
    return fit
