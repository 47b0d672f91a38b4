"""Scorers against hand-computed values: item F1 over (entity, attribute) cells, exact match, a
user function named as ``module:function``."""

from __future__ import annotations

import json

import pytest

from kswarm.errors import SpecError
from kswarm.rollouts import scorers

KEY = [
    {"entity": "Acme", "founded": 1990, "ceo": "Ann Lee"},
    {"entity": "Bolt", "founded": 2001, "ceo": "Bo Chan"},
]


def test_item_f1_counts_cells_not_rows() -> None:
    # 3 cells reported, 2 right (Acme founded, Acme ceo) and 1 wrong (Bolt founded):
    # precision 2/3, recall 2/4, F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7.
    answer = json.dumps(
        [
            {"entity": "acme", "founded": "1990", "ceo": " ann  lee"},
            {"entity": "Bolt", "founded": 1999},
        ]
    )
    assert scorers.item_f1(answer, KEY) == pytest.approx(4 / 7, abs=1e-6)


def test_item_f1_reads_rows_inside_text_and_gives_one_for_a_perfect_table() -> None:
    answer = "Here is the table:\n" + json.dumps({"rows": KEY})
    assert scorers.item_f1(answer, KEY) == 1.0


def test_item_f1_of_an_answer_without_rows_is_zero() -> None:
    assert scorers.item_f1("I could not find them.", KEY) == 0.0


def test_a_key_row_without_entity_is_named() -> None:
    with pytest.raises(SpecError, match=r"answerKey\.rows\[1\]"):
        scorers.item_f1("[]", [KEY[0], {"founded": 1}])


def test_exact_match_ignores_case_and_spacing_only() -> None:
    assert scorers.exact_match("  Paris\n", "paris") == 1.0
    assert scorers.exact_match("Paris, France", "paris") == 0.0


def test_a_user_scorer_is_called_with_task_answer_and_key() -> None:
    value = scorers.score_user(
        "rollout_user_scorer:share_of_words",
        task="t",
        answer="red green",
        answer_key={"text": "red green blue blue"},
    )
    assert value == 0.5


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param("no_colon", "module:function", id="no-colon"),
        pytest.param("no_such_module_xyz:f", "cannot import", id="no-module"),
        pytest.param("rollout_user_scorer:missing", "no function 'missing'", id="no-function"),
        pytest.param("rollout_user_scorer:out_of_range", r"not a number in \[0, 1\]", id="range"),
        pytest.param(
            "rollout_user_scorer:raises", "raised ValueError: broken on purpose", id="raises"
        ),
    ],
)
def test_a_bad_user_scorer_is_named(ref: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as e:
        scorers.score_user(ref, task="t", answer="a", answer_key={})
    assert e.value.path == "spec.evaluation.function"
