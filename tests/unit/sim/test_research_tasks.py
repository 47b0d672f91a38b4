"""The research-task format of the demo world: what parses as a task, and what answers hold."""

from __future__ import annotations

import pytest

from kswarm.sim.tasks import ResearchTask, answer_rows, parse_task, subtask_text


def test_a_wide_task_lists_its_attributes_and_items() -> None:
    text = (
        "Find facts about these companies.\n"
        "Attributes: founded, headquarters\n"
        "Items:\n"
        "- Ulmoon Pharma\n"
        "-   Dornia Holdings  \n"
        "\n"
        "Answer in JSON."
    )
    assert parse_task(text) == ResearchTask(
        attributes=("founded", "headquarters"), items=("Ulmoon Pharma", "Dornia Holdings")
    )


def test_the_items_list_ends_at_the_first_line_that_is_not_an_item() -> None:
    text = "Attributes: ceo\nItems:\n- Ulmoon Pharma\nThen also:\n- Not An Item"
    assert parse_task(text) == ResearchTask(attributes=("ceo",), items=("Ulmoon Pharma",))


def test_a_deep_task_names_where_its_chain_starts() -> None:
    text = "Follow the parents.\nAttributes: parent, founded\nChain start:  Ulmoon Pharma  \n"
    assert parse_task(text) == ResearchTask(
        attributes=("parent", "founded"), chain_start="Ulmoon Pharma"
    )


def test_a_subtask_reads_back_as_its_one_company() -> None:
    text = subtask_text("Ulmoon Pharma", ("founded", "ceo"))
    assert parse_task(text) == ResearchTask(attributes=("founded", "ceo"), subject="Ulmoon Pharma")


def test_attributes_the_corpus_does_not_know_are_dropped() -> None:
    task = parse_task("Attributes: founded, revenue, ceo\nItems:\n- Ulmoon Pharma")
    assert task is not None
    assert task.attributes == ("founded", "ceo")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "Compare the GPU offerings of the three largest cloud providers and write a "
            "recommendation",
            id="free-text",
        ),
        pytest.param("", id="empty"),
        pytest.param("Attributes: founded\nNothing else.", id="attributes-without-items"),
        pytest.param("Attributes: founded\nItems:\n", id="empty-items-list"),
        pytest.param("Attributes: revenue, price\nItems:\n- Ulmoon Pharma", id="unknown-attrs"),
        pytest.param("Items:\n- Ulmoon Pharma\n- Dornia Holdings", id="items-without-attributes"),
    ],
)
def test_text_that_is_not_a_research_task_parses_as_none(text: str) -> None:
    assert parse_task(text) is None


@pytest.mark.parametrize(
    ("answer", "rows"),
    [
        pytest.param(
            '[{"entity": "A"}, {"entity": "B"}]', [{"entity": "A"}, {"entity": "B"}], id="list"
        ),
        pytest.param('{"entity": "A", "ceo": "X"}', [{"entity": "A", "ceo": "X"}], id="object"),
        pytest.param('{"rows": [{"entity": "A"}]}', [{"entity": "A"}], id="rows-key"),
        pytest.param(
            'Here is what I found:\n[{"entity": "A"}]\nThat is all.',
            [{"entity": "A"}],
            id="in-text",
        ),
        pytest.param(
            'notes first\n{"entity": "A", "founded": 1954}',
            [{"entity": "A", "founded": 1954}],
            id="object-on-last-line",
        ),
        pytest.param('[{"entity": "A"}, 3, "x"]', [{"entity": "A"}], id="non-objects-dropped"),
        pytest.param("I could not find anything.", [], id="no-json"),
        pytest.param("", [], id="empty"),
        pytest.param('"just a string"', [], id="json-scalar"),
    ],
)
def test_answer_rows_reads_the_json_objects_of_an_answer(
    answer: str, rows: list[dict[str, object]]
) -> None:
    assert answer_rows(answer) == rows
