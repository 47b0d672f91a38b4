"""A worker's tool servers follow its tools file: servers come, change, go, and wait until they
answer, while the other servers' tools stay offered."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from pathlib import Path

import yaml
from mcp_support import free_port, ledger_server, read_journal, time_server

from kswarm.sim import demo_tools
from kswarm.tools import ToolContext
from kswarm.tools.servers import ToolServerConfig, server_entry
from kswarm.workflows.tools_file import ServedTools, ToolsFile, follow_tools_file


def write(path: Path, servers: list[ToolServerConfig]) -> None:
    path.write_text(yaml.safe_dump({"servers": [server_entry(s) for s in servers]}))


async def until(check: Callable[[], bool]) -> None:
    """Wait (20 s at most) until ``check()`` holds."""
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached within 20 s")


async def test_the_registry_follows_the_tools_file(tmp_path: Path, journal: Path) -> None:
    tools_yaml = tmp_path / "tools.yaml"
    write(tools_yaml, [ledger_server(journal)])
    activities = types.SimpleNamespace(tools=demo_tools())
    served = ServedTools(activities, base=activities.tools)  # type: ignore[arg-type]
    follow = asyncio.create_task(
        follow_tools_file(ToolsFile(str(tools_yaml)), served, interval=0.1)
    )
    try:
        await until(lambda: "led__append" in activities.tools.tools)
        assert {"search", "write_note"} <= set(activities.tools.names())
        ctx = ToolContext(key="w/1", job_uid="w", agent_id="a", attempt=1)
        await activities.tools.get("led__append").fn({"text": "x"}, ctx)
        assert [e["key"] for e in read_journal(journal)] == ["w/1"]

        # A server added, one that cannot be reached yet: the others are served meanwhile.
        port = free_port()
        late = ToolServerConfig(name="late", url=f"http://127.0.0.1:{port}/mcp", timeout_seconds=2)
        write(tools_yaml, [ledger_server(journal), time_server(), late])
        await until(lambda: "time__get_current_time" in activities.tools.tools)
        assert "late" in served.waiting and "led__append" in activities.tools.tools

        # A server removed: its tools leave the registry.
        write(tools_yaml, [time_server()])
        await until(lambda: "led__append" not in activities.tools.tools)
        assert "time__get_current_time" in activities.tools.tools and not served.waiting
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await served.close()


async def test_an_invalid_tools_file_keeps_the_servers_served(
    tmp_path: Path, journal: Path
) -> None:
    tools_yaml = tmp_path / "tools.yaml"
    write(tools_yaml, [ledger_server(journal)])
    activities = types.SimpleNamespace(tools=demo_tools())
    served = ServedTools(activities, base=activities.tools)  # type: ignore[arg-type]
    follow = asyncio.create_task(
        follow_tools_file(ToolsFile(str(tools_yaml)), served, interval=0.1)
    )
    try:
        await until(lambda: "led__append" in activities.tools.tools)
        tools_yaml.write_text("servers: [{name: broken}]")
        await asyncio.sleep(0.5)
        assert "led__append" in activities.tools.tools
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await served.close()


async def test_a_tool_a_server_adds_while_it_runs_is_offered(tmp_path: Path, journal: Path) -> None:
    tools_yaml = tmp_path / "tools.yaml"
    write(tools_yaml, [ledger_server(journal)])
    activities = types.SimpleNamespace(tools=demo_tools())
    served = ServedTools(activities, base=activities.tools)  # type: ignore[arg-type]
    follow = asyncio.create_task(
        follow_tools_file(ToolsFile(str(tools_yaml)), served, interval=0.1, relist_every=2)
    )
    try:
        await until(lambda: "led__grow" in activities.tools.tools)
        assert "led__extra" not in activities.tools.tools
        ctx = ToolContext(key="w/2", job_uid="w", agent_id="a", attempt=1)
        await activities.tools.get("led__grow").fn({"name": "extra"}, ctx)
        await until(lambda: "led__extra" in activities.tools.tools)
        result = await activities.tools.get("led__extra").fn({}, ctx)
        assert result["content"][0]["text"] == "extra"
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await served.close()
