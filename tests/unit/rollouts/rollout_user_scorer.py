"""A user scorer for the tests, named as ``rollout_user_scorer:share_of_words``."""

from typing import Any


def share_of_words(*, task: str, answer: str, answer_key: dict[str, Any]) -> float:
    """Share of the key's words that the answer contains."""
    words = str(answer_key.get("text", "")).split()
    return sum(1 for w in words if w in answer.split()) / len(words) if words else 0.0


def out_of_range(*, task: str, answer: str, answer_key: dict[str, Any]) -> float:
    return 2.0


def raises(*, task: str, answer: str, answer_key: dict[str, Any]) -> float:
    raise ValueError("broken on purpose")
