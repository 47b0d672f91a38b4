"""Real MCP servers become tools: names, schemas, annotations, results, errors, progress."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp_support import free_port, git_server, ledger_server, read_journal, time_server

from kswarm.errors import ToolCallFailed, ToolError, ToolServerUnavailable
from kswarm.tools import ToolContext, ToolRegistry, validate_arguments
from kswarm.tools.mcp import IDEMPOTENCY_KEY_META, tool_servers
from kswarm.tools.results import for_model
from kswarm.tools.servers import ToolServerConfig


def ctx(key: str = "job1/job1/a/1/0", progress: Any = None) -> ToolContext:
    return ToolContext(key=key, job_uid="job1", agent_id="job1/a", attempt=1, progress=progress)


async def test_time_server_tools_are_offered_as_server__tool_with_the_servers_schema() -> None:
    async with tool_servers([time_server()]) as servers:
        registry = servers.register(ToolRegistry())
    assert registry.names() == ["time__convert_time", "time__get_current_time"]
    tool = registry.get("time__get_current_time")
    assert tool.server == "time"
    assert tool.parameters["required"] == ["timezone"]
    assert tool.parameters["properties"]["timezone"]["type"] == "string"
    assert tool.local is True


async def test_a_call_stores_text_and_structured_content_and_the_model_sees_the_text() -> None:
    async with tool_servers([time_server()]) as servers:
        registry = servers.register(ToolRegistry())
        result = await registry.get("time__get_current_time").fn({"timezone": "UTC"}, ctx())
    assert result["server"] == "time" and result["tool"] == "get_current_time"
    assert result["structuredContent"]["timezone"] == "UTC"
    assert result["content"][0]["type"] == "text"
    assert '"timezone": "UTC"' in result["content"][0]["text"]
    assert for_model(result) == result["content"][0]["text"]


async def test_is_error_is_a_failed_call_whose_answer_goes_to_the_model() -> None:
    async with tool_servers([time_server()]) as servers:
        tool = servers.register(ToolRegistry()).get("time__get_current_time")
        with pytest.raises(ToolCallFailed) as failed:
            await tool.fn({"timezone": "Nowhere/Atlantis"}, ctx())
    assert failed.value.retryable is False
    assert "Nowhere/Atlantis" in str(failed.value)
    assert isinstance(failed.value.result, dict)
    assert failed.value.result["isError"] is True


async def test_arguments_are_checked_against_the_servers_schema_naming_the_argument() -> None:
    async with tool_servers([time_server()]) as servers:
        tool = servers.register(ToolRegistry()).get("time__convert_time")
    with pytest.raises(ToolError, match="missing required argument 'target_timezone'"):
        validate_arguments(tool, {"source_timezone": "UTC", "time": "12:00"})
    with pytest.raises(ToolError, match="argument 'time' must be string, got integer"):
        validate_arguments(
            tool, {"source_timezone": "UTC", "time": 12, "target_timezone": "Europe/Paris"}
        )


async def test_git_server_on_a_repository_the_test_made(git_repo: Path) -> None:
    async with tool_servers([git_server(git_repo)]) as servers:
        registry = servers.register(ToolRegistry())
        log = await registry.get("git__git_log").fn({"repo_path": str(git_repo)}, ctx())
        (git_repo / "new.txt").write_text("new\n")
        await registry.get("git__git_add").fn(
            {"repo_path": str(git_repo), "files": ["new.txt"]}, ctx()
        )
        await registry.get("git__git_commit").fn(
            {"repo_path": str(git_repo), "message": "added by an agent"}, ctx()
        )
    assert "first" in for_model(log)
    subjects = subprocess.run(
        ["git", "log", "--format=%s"], cwd=git_repo, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert subjects[:2] == ["added by an agent", "first"]
    # Annotations: git_status reads; git_commit changes the repository.
    assert registry.get("git__git_status").side_effects is False
    assert registry.get("git__git_commit").side_effects is True


async def test_every_call_carries_its_idempotency_key_in_meta(journal: Path) -> None:
    async with tool_servers([ledger_server(journal)]) as servers:
        registry = servers.register(ToolRegistry())
        await registry.get("led__append").fn({"text": "a"}, ctx("job1/job1/a/3/0"))
        await registry.get("led__append").fn({"text": "b"}, ctx("job1/job1/a/3/1"))
    assert IDEMPOTENCY_KEY_META == "kswarm.dev/idempotency-key"
    assert [e["key"] for e in read_journal(journal)] == ["job1/job1/a/3/0", "job1/job1/a/3/1"]


async def test_annotations_map_to_the_side_effect_flag(journal: Path) -> None:
    async with tool_servers([ledger_server(journal)]) as servers:
        registry = servers.register(ToolRegistry())
    assert registry.get("led__read").side_effects is False  # readOnlyHint
    assert registry.get("led__append").side_effects is True  # destructiveHint
    assert registry.get("led__slow").side_effects is True  # no hint


async def test_progress_notifications_reach_the_calls_progress(journal: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []
    async with tool_servers([ledger_server(journal)]) as servers:
        tool = servers.register(ToolRegistry()).get("led__slow")
        result = await tool.fn({"seconds": 0.3}, ctx(progress=lambda *p: seen.append(p)))
    assert for_model(result) == "done"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_cancelling_a_call_in_flight_sends_notifications_cancelled(journal: Path) -> None:
    async with tool_servers([ledger_server(journal)]) as servers:
        tool = servers.register(ToolRegistry()).get("led__slow")
        call = asyncio.create_task(tool.fn({"seconds": 30}, ctx("job1/job1/a/1/7")))
        for _ in range(100):
            if read_journal(journal):
                break
            await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(100):
            if len(read_journal(journal)) == 2:
                break
            await asyncio.sleep(0.05)
    assert [(e["event"], e["key"]) for e in read_journal(journal)] == [
        ("call", "job1/job1/a/1/7"),
        ("cancelled", "job1/job1/a/1/7"),
    ]


async def test_an_unreachable_http_server_is_a_retryable_error_naming_it() -> None:
    down = ToolServerConfig(name="down", url=f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(ToolServerUnavailable, match="tool server 'down' is unavailable") as e:
        async with tool_servers([down]):
            pass
    assert e.value.retryable is True


async def test_a_stdio_server_that_exits_is_unavailable_then_started_again(journal: Path) -> None:
    async with tool_servers([ledger_server(journal, timeout_seconds=10)]) as servers:
        registry = servers.register(ToolRegistry())
        connection = servers.connections["led"]
        await registry.get("led__append").fn({"text": "a"}, ctx("k/1"))
        # Kill the server process behind the session, as a crash would.
        client = await connection.client()
        assert client is not None
        pids = subprocess.run(
            ["pgrep", "-f", f"ledger_server.py {journal}"], capture_output=True, text=True
        ).stdout.split()
        assert len(pids) == 1
        subprocess.run(["kill", "-9", pids[0]], check=True)
        with pytest.raises(ToolServerUnavailable, match="'led'"):
            await registry.get("led__append").fn({"text": "b"}, ctx("k/2"))
        # The next call opens a new session (a new server process).
        await registry.get("led__append").fn({"text": "c"}, ctx("k/3"))
    assert [e["key"] for e in read_journal(journal)] == ["k/1", "k/3"]


async def test_an_answer_that_is_not_json_rpc_fails_the_connection_with_its_name(
    tmp_path: Path,
) -> None:
    liar = tmp_path / "liar.py"
    liar.write_text("import sys\nfor line in sys.stdin:\n    print('this is not JSON-RPC')\n")
    config = ToolServerConfig(
        name="liar", command=sys.executable, args=("-P", str(liar)), timeout_seconds=3
    )
    with pytest.raises(ToolServerUnavailable, match="tool server 'liar' is unavailable"):
        async with tool_servers([config]):
            pass


async def test_everything_server_over_streamable_http(everything_url: str) -> None:
    config = ToolServerConfig(name="everything", url=everything_url, timeout_seconds=20)
    seen: list[tuple[float, float | None, str | None]] = []
    async with tool_servers([config]) as servers:
        registry = servers.register(ToolRegistry())
        echo = await registry.get("everything__echo").fn({"message": "hi"}, ctx())
        weather = await registry.get("everything__get-structured-content").fn(
            {"location": "Chicago"}, ctx()
        )
        long = await registry.get("everything__trigger-long-running-operation").fn(
            {"duration": 1, "steps": 4}, ctx(progress=lambda *p: seen.append(p))
        )
        image = await registry.get("everything__get-tiny-image").fn({}, ctx())
    assert for_model(echo) == "Echo: hi"
    assert set(weather["structuredContent"]) == {"temperature", "conditions", "humidity"}
    assert [p[0] for p in seen] == [1, 2, 3, 4]
    assert "completed" in for_model(long)
    assert image["content"][1]["type"] == "image"
    assert "[image image/png," in for_model(image)  # named, not inlined for the model
    # Annotations from a server no one here wrote: toggles change state, echo reads.
    assert registry.get("everything__toggle-simulated-logging").side_effects is True


async def test_a_large_result_is_stored_whole_and_cut_for_the_model(journal: Path) -> None:
    async with tool_servers([ledger_server(journal)]) as servers:
        tool = servers.register(ToolRegistry()).get("led__big")
        result = await tool.fn({"chars": 50_000}, ctx())
    assert len(result["content"][0]["text"]) == 50_000
    shown = for_model(result, limit=1000)
    assert shown.startswith("x" * 1000)
    assert "the result has 50000 characters" in shown and len(shown) < 1200
