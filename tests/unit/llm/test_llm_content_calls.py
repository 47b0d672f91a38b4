"""Tool calls read from a model's text, and text that is left as text."""

from __future__ import annotations

import json

import pytest

from kswarm.llm.content_calls import calls_from_content


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"name": "search", "arguments": {"query": "q"}}', id="bare"),
        pytest.param('```json\n{"name": "search", "arguments": {"query": "q"}}\n```', id="fence"),
        pytest.param(
            '```json\n{"name": "search", "arguments": {"query": "q"}}\n```\nThis is JSON.',
            id="fence-then-prose",
        ),
        pytest.param(
            '<tool_call>\n{"name": "search", "arguments": {"query": "q"}}\n</tool_call>', id="tags"
        ),
        pytest.param('{"name": "search", "parameters": {"query": "q"}}', id="parameters"),
        pytest.param('{"name": "search", "arguments": "{\\"query\\": \\"q\\"}"}', id="string"),
    ],
)
def test_reads_a_call_written_as_json(content: str) -> None:
    (call,) = calls_from_content(content)
    assert call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"query": "q"}


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("Oslo.", id="prose"),
        pytest.param('The call is {"name": "search", "arguments": {}}', id="quoted-in-prose"),
        pytest.param('{"city": "Oslo"}', id="json-not-a-call"),
        pytest.param('{"name": "search", "arguments": [1]}', id="arguments-not-an-object"),
        pytest.param("", id="empty"),
    ],
)
def test_leaves_anything_else_as_text(content: str) -> None:
    assert calls_from_content(content) == []


def test_reads_several_calls_in_a_list() -> None:
    calls = calls_from_content('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]')
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert len({c["id"] for c in calls}) == 2
