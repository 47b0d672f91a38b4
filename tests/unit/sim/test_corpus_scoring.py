"""The ``corpus-item-f1`` scorer against a three-company corpus, with hand-computed scores."""

from __future__ import annotations

import json

import pytest

from kswarm.sim.corpus import Company, Corpus
from kswarm.sim.scoring import CorpusScore, score_answer, score_corpus_answer

ACME = Company("Acme Co", 1950, "Graz", "Ada Berg", 100, "Bolt Group")
BOLT = Company("Bolt Group", 1920, "Oslo", "Ben Silva", 900, None)
CRUX = Company("Crux Labs", 2001, "Lyon", "Cy Novak", 40, None)
CORPUS = Corpus(seed=0, companies=(ACME, BOLT, CRUX), documents=())


def wide(*items: str, attributes: str = "founded, headquarters") -> str:
    return f"Attributes: {attributes}\nItems:\n" + "".join(f"- {i}\n" for i in items)


def rows(*companies: Company, attributes: tuple[str, ...] = ("founded", "headquarters")) -> str:
    return json.dumps([{"entity": c.name, **{a: c.fact(a) for a in attributes}} for c in companies])


def test_a_complete_correct_answer_scores_one() -> None:
    score = score_corpus_answer(wide("Acme Co", "Crux Labs"), rows(ACME, CRUX), CORPUS)
    assert score == CorpusScore(quality=1.0, precision=1.0, recall=1.0)


def test_an_item_outside_the_corpus_counts_as_a_miss_and_is_named() -> None:
    """The case of issue 12: before, the unknown item counted as nothing and this scored 1.0."""
    task = wide("Apple Inc", "Acme Co")
    score = score_corpus_answer(task, rows(ACME), CORPUS)
    assert score is not None
    # Two items x two attributes asked, two cells reported, both right:
    # precision 2/2, recall 2/4, F1 = 2 * 1 * 0.5 / 1.5.
    assert score == CorpusScore(
        quality=0.6667, precision=1.0, recall=0.5, unknown_items=("Apple Inc",)
    )
    assert score.quality < 1.0


def test_an_answer_about_an_unknown_item_cannot_be_right() -> None:
    apple = json.dumps([{"entity": "Apple Inc", "founded": "1976"}])
    score = score_corpus_answer(wide("Apple Inc", attributes="founded"), apple, CORPUS)
    assert score == CorpusScore(
        quality=0.0, precision=0.0, recall=0.0, unknown_items=("Apple Inc",)
    )


def test_wrong_and_missing_cells_lower_precision_and_recall() -> None:
    answer = json.dumps(
        [
            {"entity": "Acme Co", "founded": "1950", "headquarters": "Vienna"},
            {"entity": "Crux Labs", "founded": 2001},
        ]
    )
    score = score_corpus_answer(wide("Acme Co", "Crux Labs"), answer, CORPUS)
    # Three cells reported, two right (Acme founded, Crux founded); four asked.
    # precision 2/3, recall 2/4, F1 = 2 * (2/3) * (1/2) / (7/6) = 4/7.
    assert score == CorpusScore(quality=0.5714, precision=0.6667, recall=0.5)


def test_values_match_without_regard_to_case_or_surrounding_space() -> None:
    answer = json.dumps([{"entity": "Acme Co", "headquarters": "  gRAZ "}])
    score = score_corpus_answer(wide("Acme Co", attributes="headquarters"), answer, CORPUS)
    assert score is not None and score.quality == 1.0


def test_empty_values_are_not_reported_cells() -> None:
    answer = json.dumps([{"entity": "Acme Co", "founded": "1950", "headquarters": ""}])
    score = score_corpus_answer(wide("Acme Co"), answer, CORPUS)
    # One cell reported and right; two asked: precision 1, recall 1/2.
    assert score == CorpusScore(quality=0.6667, precision=1.0, recall=0.5)


def test_a_deep_task_asks_for_every_company_up_the_chain() -> None:
    task = "Attributes: parent\nChain start: Acme Co"
    answer = json.dumps(
        [{"entity": "Acme Co", "parent": "Bolt Group"}, {"entity": "Bolt Group", "parent": "none"}]
    )
    assert score_corpus_answer(task, answer, CORPUS) == CorpusScore(1.0, 1.0, 1.0)
    half = json.dumps([{"entity": "Acme Co", "parent": "Bolt Group"}])
    assert score_corpus_answer(task, half, CORPUS) == CorpusScore(0.6667, 1.0, 0.5)


def test_a_deep_task_starting_outside_the_corpus_names_its_start() -> None:
    score = score_corpus_answer("Attributes: parent\nChain start: Apple Inc", "[]", CORPUS)
    assert score == CorpusScore(0.0, 0.0, 0.0, unknown_items=("Apple Inc",))


def test_a_subtask_is_scored_on_its_one_company() -> None:
    task = "Find the ceo of the company 'Crux Labs'.\nAttributes: ceo"
    answer = json.dumps({"entity": "Crux Labs", "ceo": "Cy Novak"})
    assert score_corpus_answer(task, answer, CORPUS) == CorpusScore(1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "task",
    [
        pytest.param("Write a recommendation on cloud GPUs.", id="free-text"),
        pytest.param("Attributes: revenue\nItems:\n- Acme Co", id="no-known-attribute"),
    ],
)
def test_a_task_that_is_not_a_research_task_has_no_score(task: str) -> None:
    assert score_corpus_answer(task, rows(ACME), CORPUS) is None
    assert score_answer(task, rows(ACME), CORPUS) is None


def test_score_answer_is_the_quality_alone() -> None:
    assert score_answer(wide("Apple Inc", "Acme Co"), rows(ACME), CORPUS) == 0.6667
