"""Answer keys read from a file before the job starts, and the errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kswarm.errors import SpecError
from kswarm.rollouts.answer_keys import inline_answer_key, parse_answer_key
from kswarm.spec import parse_spec


def _spec(key: dict[str, object]) -> object:
    return parse_spec({"task": "t", "evaluation": {"scorer": "item-f1", "answerKey": key}})


def test_a_key_file_is_read_relative_to_the_manifest_and_inlined(tmp_path: Path) -> None:
    (tmp_path / "key.json").write_text(json.dumps({"rows": [{"entity": "A", "ceo": "X"}]}))
    spec = inline_answer_key(_spec({"file": "key.json"}), base_dir=str(tmp_path))  # type: ignore[arg-type]
    assert spec.evaluation is not None and spec.evaluation.answer_key is not None
    assert spec.evaluation.answer_key.rows == ({"entity": "A", "ceo": "X"},)
    assert spec.to_manifest_spec()["evaluation"]["answerKey"]["rows"] == [
        {"entity": "A", "ceo": "X"}
    ]


def test_a_missing_key_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        inline_answer_key(_spec({"file": "nope.yaml"}), base_dir=str(tmp_path))  # type: ignore[arg-type]
    assert e.value.path == "spec.evaluation.answerKey.file"
    assert "nope.yaml" in e.value.message


@pytest.mark.parametrize(
    ("text", "rows", "body"),
    [
        pytest.param("- {entity: A, x: 1}\n", ({"entity": "A", "x": 1},), None, id="yaml-list"),
        pytest.param('{"text": "Paris"}', (), "Paris", id="json-text"),
        pytest.param("Paris\n", (), "Paris", id="plain-text"),
    ],
)
def test_key_documents_in_each_shape(text: str, rows: tuple[object, ...], body: str | None) -> None:
    key = parse_answer_key(text, path="p")
    assert (key.rows, key.text) == (rows, body)


def test_a_key_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(SpecError, match="rows must be a list of objects"):
        parse_answer_key('{"rows": [1, 2]}', path="p")


def test_item_f1_without_an_answer_key_is_refused_by_the_schema() -> None:
    with pytest.raises(SpecError, match="answerKey is required"):
        parse_spec({"task": "t", "evaluation": {"scorer": "item-f1"}})
