"""Tool calls that a model wrote as JSON in its text, for servers that did not parse them.

A server parses a model's tool calls only when it knows the model's format (vLLM's
``--tool-call-parser``, llama.cpp's chat template); otherwise the call arrives as text, e.g.
``{"name": "search", "arguments": {"query": "..."}}``, maybe in a code fence or in
``<tool_call>`` tags. With a pool's ``toolCallsInContent`` the model step reads such text back
into ``tool_calls``. Only text that is nothing but calls is read, or text that opens with them
in a code fence (small models comment on the call after it): a call quoted inside prose stays
prose.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["calls_from_content"]

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```", re.S)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


def _call(obj: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    inner = obj.get("function")
    function: dict[str, Any] = inner if isinstance(inner, dict) else obj
    name = function.get("name")
    args = function.get("arguments", function.get("parameters", {}))
    if not isinstance(name, str) or not name:
        return None
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return {
        "id": f"call_content_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def calls_from_content(content: str | None) -> list[dict[str, Any]]:
    """The tool calls ``content`` consists of, in OpenAI's ``tool_calls`` shape; ``[]`` when it
    is anything else (prose, JSON that is not a call, a call with other text around it)."""
    text = (content or "").strip()
    if not text:
        return []
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    pieces = _TAGGED.findall(text)
    if pieces and not _TAGGED.sub("", text).strip():
        parsed: list[Any] = []
        for piece in pieces:
            try:
                parsed.append(json.loads(piece))
            except ValueError:
                return []
    else:
        try:
            value = json.loads(text)
        except ValueError:
            return []
        parsed = value if isinstance(value, list) else [value]
    calls = [_call(obj, i) for i, obj in enumerate(parsed)]
    return [c for c in calls if c is not None] if all(calls) else []
