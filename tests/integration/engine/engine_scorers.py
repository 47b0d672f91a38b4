"""User scorers for the engine tests, named as ``engine_scorers:FUNCTION`` in a job's spec."""

from typing import Any


def share_of_entities(*, task: str, answer: str, answer_key: dict[str, Any]) -> float:
    """Share of the key's entities that the answer names."""
    names = [str(r["entity"]) for r in answer_key.get("rows") or []]
    return sum(1 for n in names if n in answer) / len(names) if names else 0.0


def broken(*, task: str, answer: str, answer_key: dict[str, Any]) -> float:
    raise ValueError("this scorer is broken on purpose")
