"""Tool names offered to models, allow-lists with SERVER__*, arguments checked with jsonschema,
and what a model sees of a result."""

from __future__ import annotations

from typing import Any

import pytest

from kswarm.errors import SpecError, ToolError
from kswarm.spec import parse_spec
from kswarm.tools import (
    Tool,
    ToolContext,
    ToolRegistry,
    allowed_by,
    server_of,
    validate_arguments,
)
from kswarm.tools.mcp import MAX_NAME, offered_name
from kswarm.tools.results import for_model


async def _nothing(args: dict[str, Any], ctx: ToolContext) -> None:
    return None


def tool(name: str, parameters: dict[str, Any] | None = None) -> Tool:
    return Tool(name, "", parameters or {"type": "object"}, _nothing)


def test_offered_names_are_valid_function_names() -> None:
    assert offered_name("git", "git_status") == "git__git_status"
    assert server_of("git__git_status") == "git" and server_of("search") == ""
    assert offered_name("web", "fetch.page/v2") == "web__fetch_page_v2"
    long_a, long_b = offered_name("s", "a" * 80), offered_name("s", "a" * 79 + "b")
    assert len(long_a) == len(long_b) == MAX_NAME and long_a != long_b


def test_allow_lists_take_exact_names_and_server_wildcards() -> None:
    reg = ToolRegistry()
    for n in ("git__status", "git__commit", "gitlab__issues", "search"):
        reg.register(tool(n))
    assert reg.expand(["git__*", "search"]) == ["git__commit", "git__status", "search"]
    assert allowed_by(["git__*"], "git__commit")
    assert not allowed_by(["git__*"], "gitlab__issues")
    assert not allowed_by(["git__status"], "git__commit")
    assert [s["function"]["name"] for s in reg.openai_specs(["gitlab__*"])] == ["gitlab__issues"]


SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "depth": {"type": "integer", "minimum": 1, "maximum": 5},
        "filter": {
            "type": "object",
            "properties": {"kind": {"enum": ["file", "dir"]}},
            "required": ["kind"],
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param({}, "t: missing required argument 'path'", id="required"),
        pytest.param({"path": 1}, "t: argument 'path' must be string, got integer", id="type"),
        pytest.param({"path": "/", "depth": 9}, "argument 'depth' must be in [1, 5]", id="max"),
        pytest.param({"path": "/", "x": 1}, "t: unknown argument 'x'", id="unknown"),
        pytest.param(
            {"path": "/", "filter": {}}, "missing required argument 'filter.kind'", id="nested"
        ),
        pytest.param(
            {"path": "/", "filter": {"kind": "link"}}, "argument 'filter.kind'", id="enum"
        ),
        pytest.param([], "t: arguments must be a JSON object, got array", id="not-object"),
    ],
)
def test_arguments_failing_the_schema_are_refused_naming_the_argument(
    args: Any, message: str
) -> None:
    with pytest.raises(ToolError) as e:
        validate_arguments(tool("t", SCHEMA), args)
    assert message in str(e.value)


def test_a_tool_whose_schema_is_invalid_is_refused_by_name() -> None:
    with pytest.raises(ToolError, match="bad: its argument schema is invalid"):
        tool("bad", {"type": "object", "properties": {"x": {"type": "nonsense"}}})


def test_job_allow_lists_name_known_servers_and_tools() -> None:
    known = ["git__status", "search"]
    spec = parse_spec({"task": "t", "tools": ["git__*", "search"]}, known_tools=known)
    assert spec.tools == ("git__*", "search")
    with pytest.raises(SpecError, match=r"spec.tools\[0\]: unknown tool server 'web'"):
        parse_spec({"task": "t", "tools": ["web__*"]}, known_tools=known)
    with pytest.raises(SpecError, match=r"spec.subagents.tools\[1\]: unknown tool 'git__push'"):
        parse_spec(
            {"task": "t", "subagents": {"tools": ["search", "git__push"]}}, known_tools=known
        )


@pytest.mark.parametrize("name", ["git tools", "git__*x", "a/b", "__*"])
def test_the_crd_pattern_refuses_names_no_tool_can_have(name: str) -> None:
    with pytest.raises(SpecError, match=r"spec.tools\[0\]"):
        parse_spec({"task": "t", "tools": [name]})


def test_a_model_sees_mcp_text_and_a_note_when_a_result_is_cut() -> None:
    result = {
        "kind": "mcp",
        "content": [{"type": "text", "text": "a" * 30}],
        "structuredContent": {"n": 1},
    }
    assert for_model(result) == "a" * 30
    assert for_model({"kind": "mcp", "content": [], "structuredContent": {"n": 1}}) == '{"n":1}'
    cut = for_model(result, limit=10)
    assert cut.startswith("a" * 10 + "\n[truncated: the result has 30 characters")
    assert for_model({"results": [1, 2]}) == '{"results":[1,2]}'
    assert for_model({"answers": "a" * 50}, limit=None) == '{"answers":"' + "a" * 50 + '"}'


def test_a_decision_goes_to_the_workflow_of_the_calls_agent() -> None:
    from kswarm.workflows.approvals import agent_workflow_id

    assert agent_workflow_id("j1/orchestrator/3/0") == "swarmjob-j1"
    assert agent_workflow_id("j1/single/1/2") == "swarmjob-j1"
    assert agent_workflow_id("j1/s001-004/2/1") == "swarmjob-j1/s001-004"
    with pytest.raises(ValueError, match="JOB/AGENT/STEP/INDEX"):
        agent_workflow_id("j1/s001-004/x")


def test_kswarm_deny_needs_a_reason_and_a_call_of_the_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kswarm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["deny", "j1", "j1/single/1/0"])
    assert e.value.code == 2 and "--reason" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["approve", "j1", "j2/single/1/0"])
    assert e.value.code == 2
    assert "is not a call of job 'j1'" in capsys.readouterr().err
