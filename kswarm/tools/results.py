"""What the model sees of a tool's result: its text, cut to a size a prompt can hold.

The ledger stores every result whole; the tool message a model gets is :func:`for_model` of it.
An MCP result (:func:`kswarm.tools.mcp.result_record`) shows its text content, and its
structured content only when it has no text (MCP servers send both for the same answer); other
content (images, audio, resources) is named, not inlined. Anything longer than
``MODEL_RESULT_CHARS`` is cut, with a note that says how long it was and that it is whole in the
ledger, so the model knows it saw part of it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MODEL_RESULT_CHARS", "for_model", "truncate"]

MODEL_RESULT_CHARS = 16_000
"""Characters of one tool result a model sees (about 4,000 tokens)."""


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        size = len(str(block.get("data", ""))) * 3 // 4
        return f"[{kind} {block.get('mimeType', '')}, {size} bytes]"
    if kind == "resource_link":
        return f"[resource {block.get('uri', '')}]"
    if kind == "resource":
        res = block.get("resource") or {}
        if "text" in res:
            return str(res["text"])
        return f"[resource {res.get('uri', '')}]"
    return json.dumps(block, separators=(",", ":"))


def _render(result: Any) -> str:
    if isinstance(result, dict) and result.get("kind") == "mcp":
        texts = [_block_text(b) for b in result.get("content") or [] if isinstance(b, dict)]
        if any(texts):
            return "\n".join(texts)
        if "structuredContent" in result:
            return json.dumps(result["structuredContent"], separators=(",", ":"))
        return ""
    return json.dumps(result, separators=(",", ":"))


def for_model(result: Any, limit: int | None = MODEL_RESULT_CHARS) -> str:
    """The tool message's content for ``result``, at most about ``limit`` characters (``None``:
    whole)."""
    text = _render(result)
    return text if limit is None else truncate(text, limit)


def truncate(text: str, limit: int = MODEL_RESULT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a note saying so when it was longer."""
    if len(text) <= limit:
        return text
    return (
        text[:limit] + f"\n[truncated: the result has {len(text)} characters, this shows the "
        f"first {limit}; the whole result is stored in the ledger]"
    )
