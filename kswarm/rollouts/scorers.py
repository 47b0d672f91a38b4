"""Scorers of a job's answer against an answer key: ``Q(τ)`` in [0, 1].

* ``item-f1``: item-level F1 as WideSearch scores a table: every (entity, attribute) cell of the
  key is an item; precision is the share of reported cells that are right, recall the share of
  the key's cells reported right. The key is a list of rows, each with an ``entity`` and one
  value per attribute; the answer is JSON rows (a list of objects, an object with ``rows``, or
  such JSON inside text). Values compare after trimming and case folding.
* ``exact-match``: 1 when the answer equals the key's ``text`` (trimmed, whitespace collapsed,
  case folded), else 0.
* ``user``: a function named ``module:function``, called as
  ``fn(task=..., answer=..., answer_key=...)`` with the key as a mapping; it returns a number in
  [0, 1].
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kswarm.answers import answer_rows
from kswarm.errors import SpecError

__all__ = [
    "UserScorer",
    "answer_rows",
    "exact_match",
    "item_f1",
    "load_user_scorer",
    "score_user",
]

UserScorer = Callable[..., float]


def _norm(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def item_f1(answer: str, key_rows: Sequence[Mapping[str, Any]], entity: str = "entity") -> float:
    """Item-level F1 of ``answer`` over the (entity, attribute) cells of ``key_rows``."""
    truth: dict[tuple[str, str], str] = {}
    attributes: set[str] = set()
    for i, row in enumerate(key_rows):
        if entity not in row:
            raise SpecError(f"spec.evaluation.answerKey.rows[{i}]", f"has no {entity!r} field")
        for attr, value in row.items():
            if attr != entity and value is not None:
                truth[(_norm(row[entity]), attr)] = _norm(value)
                attributes.add(attr)
    reported: dict[tuple[str, str], str] = {}
    for row in answer_rows(answer):
        name = _norm(row.get(entity, ""))
        for attr in attributes:
            if row.get(attr) not in (None, ""):
                reported[(name, attr)] = _norm(row[attr])
    correct = sum(1 for cell, value in reported.items() if truth.get(cell) == value)
    precision = correct / len(reported) if reported else 0.0
    recall = correct / len(truth) if truth else 0.0
    if precision + recall == 0:
        return 0.0
    return round(2 * precision * recall / (precision + recall), 6)


def exact_match(answer: str, expected: str) -> float:
    return 1.0 if _norm(answer) == _norm(expected) else 0.0


def load_user_scorer(ref: str, *, path: str = "spec.evaluation.function") -> UserScorer:
    """The function ``module:function`` names; a clear error when it cannot be loaded."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise SpecError(path, f"must name a function as module:function, got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SpecError(path, f"cannot import module {module_name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError(path, f"module {module_name!r} has no function {attr!r}")
    scorer: UserScorer = fn
    return scorer


def score_user(ref: str, *, task: str, answer: str, answer_key: Mapping[str, Any]) -> float:
    """Call the user scorer ``ref`` and check that it returns a number in [0, 1]."""
    scorer = load_user_scorer(ref)
    try:
        value = scorer(task=task, answer=answer, answer_key=dict(answer_key))
    except Exception as e:  # a user's bug must not retry the job's last write for ever
        raise SpecError("spec.evaluation.function", f"{ref} raised {type(e).__name__}: {e}") from e
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SpecError(
            "spec.evaluation.function", f"{ref} returned {value!r}, not a number in [0, 1]"
        )
    return float(value)
