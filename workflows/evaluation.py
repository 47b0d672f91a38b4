"""A job's answer scored as its ``spec.evaluation`` asks; no evaluation, no ``quality``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kswarm.sim.scoring import score_corpus_answer
from kswarm.spec import Scorer

__all__ = ["evaluate"]


def evaluate(spec: Mapping[str, Any], answer: str) -> float | None:
    """The quality of ``answer`` to the job whose manifest ``spec`` is given, in [0, 1];
    ``None`` when the job asks for no evaluation."""
    evaluation = spec.get("evaluation")
    if not isinstance(evaluation, Mapping):
        return None
    scorer = Scorer(str(evaluation.get("scorer")))
    if scorer is Scorer.CORPUS_ITEM_F1:
        score = score_corpus_answer(str(spec.get("task", "")), answer)
        return score.quality if score is not None else 0.0
    raise AssertionError(f"no scorer for {scorer}")  # the schema's enum is exhaustive
