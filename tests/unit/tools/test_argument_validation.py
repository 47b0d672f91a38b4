"""Tool arguments are checked against the tool's JSON schema before a call is budgeted.

A refused call's error goes back to the model as the tool's answer, so it names the tool and
the argument at fault.
"""

from __future__ import annotations

from typing import Any

import pytest

from kswarm.errors import KswarmError, ToolError
from kswarm.sim.notes import write_note_tool
from kswarm.sim.search import search_tool
from kswarm.tools import Tool, ToolContext, validate_arguments


async def _noop(args: dict[str, Any], ctx: ToolContext) -> None:
    return None


def tool(parameters: dict[str, Any]) -> Tool:
    return Tool(
        name="probe", description="a tool to validate against", parameters=parameters, fn=_noop
    )


NESTED = tool(
    {
        "type": "object",
        "properties": {
            "filters": {
                "type": "object",
                "properties": {"year": {"type": "integer", "minimum": 1900}},
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"enum": ["fast", "deep"]},
        },
    }
)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"query": "Ulmoon Pharma"}, id="required-only"),
        pytest.param({"query": "Ulmoon Pharma", "k": 5}, id="with-k"),
        pytest.param({"query": "", "k": 1}, id="lowest-k"),
    ],
)
def test_valid_arguments_are_returned_as_given(args: dict[str, Any]) -> None:
    assert validate_arguments(search_tool, args) is args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param({}, "search: arguments: 'query' is a required property", id="missing"),
        pytest.param(
            {"query": 3}, "search: argument 'query': 3 is not of type 'string'", id="wrong-type"
        ),
        pytest.param(
            {"query": "x", "k": True},
            "search: argument 'k': True is not of type 'integer'",
            id="bool-is-not-an-integer",
        ),
        pytest.param(
            {"query": "x", "k": 0},
            "search: argument 'k': 0 is less than the minimum of 1",
            id="below-minimum",
        ),
        pytest.param(
            {"query": "x", "k": 10_000},
            "search: argument 'k': 10000 is greater than the maximum of",
            id="above-maximum",
        ),
        pytest.param(
            {"query": "x", "limit": 3},
            "search: arguments: Additional properties are not allowed ('limit' was unexpected)",
            id="unknown-argument",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_the_tool_and_argument(
    args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolError) as e:
        validate_arguments(search_tool, args)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("args", [[1, 2], "query", None, 3])
def test_arguments_that_are_not_an_object_are_refused(args: Any) -> None:
    with pytest.raises(ToolError, match=r"^write_note: arguments must be a JSON object, got "):
        validate_arguments(write_note_tool, args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            {"filters": {"year": 1850}},
            "probe: argument 'filters.year': 1850 is less than the minimum of 1900",
            id="nested-field",
        ),
        pytest.param(
            {"tags": ["a", 2]},
            "probe: argument 'tags[1]': 2 is not of type 'string'",
            id="list-item",
        ),
        pytest.param(
            {"mode": "slow"},
            "probe: argument 'mode': 'slow' is not one of ['fast', 'deep']",
            id="enum",
        ),
    ],
)
def test_the_error_names_the_path_to_a_nested_argument(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ToolError) as e:
        validate_arguments(NESTED, args)
    assert str(e.value) == message


def test_a_schema_without_a_draft_is_read_as_draft_2020_12() -> None:
    """``prefixItems`` exists from Draft 2020-12 on; an older draft would ignore it."""
    pair = tool({"type": "object", "properties": {"pair": {"prefixItems": [{"type": "string"}]}}})
    with pytest.raises(ToolError, match=r"argument 'pair\[0\]': 1 is not of type 'string'"):
        validate_arguments(pair, {"pair": [1]})


def test_the_draft_a_schema_declares_is_the_draft_used() -> None:
    """Draft 4's boolean ``exclusiveMaximum`` qualifies ``maximum``; read as Draft 2020-12 it
    would be the bound ``True == 1`` and refuse 5."""
    old = tool(
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"count": {"type": "number", "maximum": 10, "exclusiveMaximum": True}},
        }
    )
    assert validate_arguments(old, {"count": 5}) == {"count": 5}
    with pytest.raises(ToolError, match=r"argument 'count': 10 is greater than or equal to"):
        validate_arguments(old, {"count": 10})


def test_a_tool_error_is_a_kswarm_error() -> None:
    with pytest.raises(KswarmError):
        validate_arguments(search_tool, {})
