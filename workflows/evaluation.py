"""A job's answer scored as its ``spec.evaluation`` asks; no evaluation, no ``quality``.

The product scorers (item F1 against an answer key, exact match, a user function) live in
:mod:`kswarm.rollouts.scorers`; ``corpus-item-f1`` scores the demo world's research tasks against
the simulator's corpus. A scorer that fails gives quality 0 and names the failure in ``error``,
so a broken scorer is seen in the report and never retried forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kswarm.errors import SpecError
from kswarm.rollouts import scorers
from kswarm.sim.scoring import score_corpus_answer
from kswarm.sim.tasks import parse_task
from kswarm.spec import Scorer

__all__ = ["Evaluation", "evaluate", "evaluate_answer"]


@dataclass(frozen=True)
class Evaluation:
    quality: float
    """Q(τ) in [0, 1]."""
    success_threshold: float | None = None
    """The evaluation's ``successThreshold``."""
    items: int | None = None
    """Independent items of the task (the width a swarm could run at once); ``None``: unknown."""
    error: str | None = None
    """Why the scorer could not score the answer (quality is then 0)."""


def evaluate(spec: Mapping[str, Any], answer: str) -> float | None:
    """The quality of ``answer`` to the job whose manifest ``spec`` is given, in [0, 1];
    ``None`` when the job asks for no evaluation."""
    result = evaluate_answer(spec, answer)
    return result.quality if result is not None else None


def evaluate_answer(spec: Mapping[str, Any], answer: str) -> Evaluation | None:
    """The full :class:`Evaluation` of ``answer``; ``None`` when the job asks for none."""
    evaluation = spec.get("evaluation")
    if not isinstance(evaluation, Mapping):
        return None
    threshold = evaluation.get("successThreshold")
    threshold = float(threshold) if threshold is not None else None
    task = str(spec.get("task", ""))
    try:
        quality, items = _score(Scorer(str(evaluation.get("scorer"))), evaluation, task, answer)
    except SpecError as e:
        return Evaluation(quality=0.0, success_threshold=threshold, error=str(e))
    except Exception as e:  # a scorer bug must not retry the job's last write for ever
        error = f"scorer {evaluation.get('scorer')} failed: {type(e).__name__}: {e}"
        return Evaluation(quality=0.0, success_threshold=threshold, error=error)
    return Evaluation(quality=quality, success_threshold=threshold, items=items)


def _score(
    scorer: Scorer, evaluation: Mapping[str, Any], task: str, answer: str
) -> tuple[float, int | None]:
    if scorer is Scorer.CORPUS_ITEM_F1:
        score = score_corpus_answer(task, answer)
        parsed = parse_task(task)
        items = len(parsed.items) if parsed is not None and parsed.items else 1
        return (score.quality if score is not None else 0.0), items
    key = evaluation.get("answerKey") or {}
    if key.get("configMap") and not (key.get("rows") or key.get("text") is not None):
        raise SpecError(
            "spec.evaluation.answerKey.configMap", "was not read into the job before it ran"
        )
    if key.get("file") and not (key.get("rows") or key.get("text") is not None):
        raise SpecError("spec.evaluation.answerKey.file", "was not read into the job before it ran")
    rows = list(key.get("rows") or [])
    if scorer is Scorer.ITEM_F1:
        return scorers.item_f1(answer, rows), len(rows) or None
    if scorer is Scorer.EXACT_MATCH:
        return scorers.exact_match(answer, str(key.get("text") or "")), None
    if scorer is Scorer.USER:
        ref = str(evaluation.get("function") or "")
        return scorers.score_user(ref, task=task, answer=answer, answer_key=key), len(rows) or None
    raise AssertionError(f"no scorer for {scorer}")  # the schema's enum is exhaustive
