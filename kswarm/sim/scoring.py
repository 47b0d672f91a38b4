"""The ``corpus-item-f1`` scorer: an answer to a demo-world research task against the corpus.

``quality`` is an item-level F1 in the manner of WideSearch: every (entity, attribute) cell the
task asks for is an item; precision is the share of reported cells that match the ground truth,
recall the share of asked cells reported right. A cell of an item the corpus does not know can
never be right: it counts as a miss for recall (never as nothing), and the score names the item.
"""

from __future__ import annotations

from dataclasses import dataclass

from kswarm.sim.corpus import Corpus, default_corpus
from kswarm.sim.tasks import answer_rows, parse_task

__all__ = ["CorpusScore", "score_answer", "score_corpus_answer"]


@dataclass(frozen=True)
class CorpusScore:
    quality: float
    """Item-level F1 in [0, 1]."""
    precision: float
    recall: float
    unknown_items: tuple[str, ...] = ()
    """Items the task names that the corpus does not hold: their cells count as missed."""


def score_corpus_answer(
    task_text: str, answer: str, corpus: Corpus | None = None
) -> CorpusScore | None:
    """The score of ``answer``, or ``None`` when the task is not a research task."""
    task = parse_task(task_text)
    if task is None:
        return None
    corpus = corpus or default_corpus()
    if task.chain_start:
        if task.chain_start not in corpus.by_name:
            entities = [task.chain_start]
        else:
            entities = [c.name for c in corpus.chain(task.chain_start)]
    elif task.subject:
        entities = [task.subject]
    else:
        entities = list(task.items)
    unknown = tuple(e for e in entities if e not in corpus.by_name)
    truth = {
        (e, a): corpus.by_name[e].fact(a).lower()
        for e in entities
        if e in corpus.by_name
        for a in task.attributes
    }
    asked = len(entities) * len(task.attributes)
    reported: dict[tuple[str, str], str] = {}
    for row in answer_rows(answer):
        entity = str(row.get("entity", ""))
        for a in task.attributes:
            if a in row and row[a] not in (None, ""):
                reported[(entity, a)] = str(row[a]).strip().lower()
    correct = sum(1 for k, v in reported.items() if truth.get(k) == v)
    precision = correct / len(reported) if reported else 0.0
    recall = correct / asked if asked else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return CorpusScore(
        quality=round(f1, 4),
        precision=round(precision, 4),
        recall=round(recall, 4),
        unknown_items=unknown,
    )


def score_answer(task_text: str, answer: str, corpus: Corpus | None = None) -> float | None:
    """Just the quality of :func:`score_corpus_answer`."""
    score = score_corpus_answer(task_text, answer, corpus)
    return score.quality if score is not None else None
