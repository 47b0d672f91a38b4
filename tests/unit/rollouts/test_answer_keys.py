"""Answer keys read from a file before the job starts, and the errors that name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kswarm.errors import SpecError
from kswarm.rollouts.answer_keys import (
    CONFIG_MAP_FIELD,
    AnswerKeyNotFound,
    config_map_ref,
    inline_answer_key,
    inline_config_map_key,
    parse_answer_key,
)
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


def _cm_spec() -> Any:
    return parse_spec(
        {
            "task": "t",
            "evaluation": {
                "scorer": "item-f1",
                "answerKey": {"configMap": {"name": "keys", "key": "ceos.yaml"}},
            },
        }
    )


@pytest.mark.parametrize(
    ("text", "rows", "body"),
    [
        pytest.param(
            '{"rows": [{"entity": "A", "ceo": "X"}]}',
            ({"entity": "A", "ceo": "X"},),
            None,
            id="json-rows",
        ),
        pytest.param(
            "- {entity: B, ceo: Y}\n", ({"entity": "B", "ceo": "Y"},), None, id="yaml-list"
        ),
        pytest.param("text: Paris\n", (), "Paris", id="yaml-text"),
    ],
)
def test_a_config_map_key_is_inlined_as_the_file_form_would_be(
    text: str, rows: tuple[object, ...], body: str | None
) -> None:
    spec = inline_config_map_key(_cm_spec(), namespace="ns", data={"ceos.yaml": text, "x": "1"})
    key = spec.evaluation.answer_key
    assert (key.rows, key.text) == (rows, body)
    assert key.config_map is not None and key.config_map.name == "keys"
    assert config_map_ref(spec) == key.config_map


def test_a_missing_config_map_names_it_and_its_key() -> None:
    with pytest.raises(AnswerKeyNotFound) as e:
        inline_config_map_key(_cm_spec(), namespace="ns", data=None)
    assert str(e.value).startswith(CONFIG_MAP_FIELD)
    assert "ConfigMap ns/keys" in str(e.value) and "'ceos.yaml'" in str(e.value)


def test_a_missing_key_names_the_config_map_the_key_and_the_keys_it_has() -> None:
    with pytest.raises(AnswerKeyNotFound) as e:
        inline_config_map_key(_cm_spec(), namespace="ns", data={"other.json": "[]"})
    message = str(e.value)
    assert "ConfigMap ns/keys has no key 'ceos.yaml'" in message
    assert "'other.json'" in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        pytest.param("rows: [1, 2]\n", "rows must be a list of objects", id="rows-not-objects"),
        pytest.param("{not: [json", "neither JSON nor YAML", id="unparsable"),
        pytest.param("rows: []\n", "holds no rows and no text", id="empty"),
        pytest.param("42\n", "must hold a list of rows", id="a-number"),
    ],
)
def test_invalid_config_map_content_names_the_field_the_config_map_and_the_key(
    text: str, why: str
) -> None:
    with pytest.raises(SpecError) as e:
        inline_config_map_key(_cm_spec(), namespace="ns", data={"ceos.yaml": text})
    assert e.value.path.startswith(CONFIG_MAP_FIELD)
    assert "ns/keys" in e.value.path and "ceos.yaml" in e.value.path
    assert why in e.value.message


def test_a_spec_without_a_config_map_key_is_left_as_it_is() -> None:
    spec = _spec({"rows": [{"entity": "A"}]})
    assert inline_config_map_key(spec, namespace="ns", data=None) is spec  # type: ignore[arg-type]
