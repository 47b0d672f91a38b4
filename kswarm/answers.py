"""Reading a model's final answer: the JSON rows a research answer reports."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["answer_rows"]


def answer_rows(answer: str) -> list[dict[str, Any]]:
    """Rows of a JSON answer: a list of objects, an object (``rows`` or one row), or JSON
    inside text (the whole text, its outermost ``[...]``, or its last parsable line)."""
    text = answer.strip()
    lines = [ln.strip() for ln in reversed(text.splitlines()) if ln.strip()]
    for candidate in (text, text[text.find("[") : text.rfind("]") + 1], *lines):
        try:
            data = json.loads(candidate)
        except (ValueError, TypeError):
            continue
        if isinstance(data, dict):
            data = data.get("rows", [data])
        if isinstance(data, list):
            return [r for r in data if isinstance(r, dict)]
    return []
