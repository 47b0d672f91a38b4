"""Jobs whose agents call MCP tools: each call exactly once, with its key, in the ledger and at
the server; ``kswarm run --tools`` end to end, and its refusals (exit 2)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from mcp_behaviours import call_named_tools
from mcp_support import HERE, free_port, job_manifest, ledger_server, read_journal, time_server
from temporalio.testing import ActivityEnvironment

from kswarm.embedded import SimOptions, embedded_stack
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig, server_entry
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import ToolCallInput

REPO = HERE.parents[2]
KSWARM = str(Path(sys.executable).parent / "kswarm")


def kswarm_run(tmp_path: Path, manifest: dict[str, Any], servers: list[Any]) -> Any:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    tools = tmp_path / "tools.yaml"
    tools.write_text(yaml.safe_dump({"servers": [server_entry(s) for s in servers]}))
    env = {**os.environ, "KSWARM_HOME": str(tmp_path / "home"), "PYTHONPATH": str(HERE)}
    env.pop("KSWARM_DATABASE_URL", None)
    behaviour = "mcp_behaviours:call_named_tools"
    return subprocess.run(
        [
            KSWARM,
            "run",
            str(job),
            "--tools",
            str(tools),
            "--json",
            "--time-scale",
            "0.005",
            "--behaviour",
            behaviour,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO,
        check=False,
    )


async def test_kswarm_run_a_swarm_whose_subagents_call_mcp_tools_once_each(
    tmp_path: Path, journal: Path
) -> None:
    calls = [
        ("led__append", {"text": "one"}),
        ("led__append", {"text": "two"}),
        ("time__get_current_time", {"timezone": "UTC"}),
    ]
    manifest = job_manifest("mcprun1", calls, ["led__*", "time__get_current_time"])
    done = kswarm_run(tmp_path, manifest, [ledger_server(journal), time_server()])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["subagents"] == {"spawned": 3, "succeeded": 3, "failed": 0}
    assert report["toolCalls"] == {"total": 3, "failed": 0, "deduplicated": 0}
    ledger = await Ledger.connect(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    try:
        rows = [r for r in await ledger.list_tool_calls("mcprun1") if r.tool != "spawn_subagents"]
    finally:
        await ledger.close()
    rows = [r for r in rows if r.tool != "finish"]
    assert sorted(r.tool for r in rows) == ["led__append", "led__append", "time__get_current_time"]
    assert all(r.status == "succeeded" and r.attempts == 1 for r in rows)
    assert len({r.key for r in rows}) == 3
    time_row = next(r for r in rows if r.tool == "time__get_current_time")
    assert time_row.result["structuredContent"]["timezone"] == "UTC"
    # The server saw each of its calls once, under the key the ledger holds.
    led_keys = sorted(r.key for r in rows if r.tool == "led__append")
    assert sorted(e["key"] for e in read_journal(journal)) == led_keys


def test_kswarm_run_refuses_an_unknown_server_or_tool_with_exit_2(
    tmp_path: Path, journal: Path
) -> None:
    servers = [ledger_server(journal)]
    for tools, named in (
        (["nope__*"], "unknown tool server 'nope'"),
        (["led__erase"], "unknown tool 'led__erase'"),
    ):
        manifest = job_manifest("mcprun2", [("led__append", {"text": "x"})], tools)
        done = kswarm_run(tmp_path, manifest, servers)
        assert done.returncode == 2, done.stderr
        assert "spec.tools[0]" in done.stderr and named in done.stderr
    assert read_journal(journal) == []


def test_kswarm_run_exits_2_when_a_tool_server_cannot_be_reached(tmp_path: Path) -> None:
    down = ToolServerConfig(name="down", url=f"http://127.0.0.1:{free_port()}/mcp")
    manifest = job_manifest("mcprun3", [("down__x", {})], ["down__*"])
    done = kswarm_run(tmp_path, manifest, [down])
    assert done.returncode == 2
    assert "tool server 'down' is unavailable" in done.stderr


async def test_a_retried_call_returns_the_stored_result_without_calling_the_server_again(
    kswarm_home: Path, journal: Path
) -> None:
    manifest = job_manifest(
        "mcpretry", [("led__append", {"text": "once"})], ["led__append"], mode="single"
    )
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    async with tool_servers([ledger_server(journal)]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            result = await stack.client.execute_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            assert result.phase == "Succeeded", result.reason
            (row,) = [r for r in await stack.ledger.list_tool_calls("mcpretry")]
            assert read_journal(journal) == [{"event": "call", "tool": "append", "key": row.key}]
            # Temporal retries an activity with the same input: run it again as it would.
            llm = LLMClient()
            activities = SwarmActivities(stack.ledger, llm, stack.pools, tools)
            again = await ActivityEnvironment().run(
                activities.run_tool,
                ToolCallInput(
                    job_uid="mcpretry",
                    agent_id=row.agent_id,
                    step=row.step,
                    index=row.index,
                    tool="led__append",
                ),
            )
            await llm.aclose()
            await stack.ledger.flush()
            (after,) = [r for r in await stack.ledger.list_tool_calls("mcpretry")]
    assert again.deduplicated is True and again.status == "succeeded"
    assert len(read_journal(journal)) == 1
    assert after.deduplicated == 1 and after.attempts == 1


async def test_an_is_error_result_is_recorded_as_failed_and_the_model_reads_it(
    kswarm_home: Path,
) -> None:
    manifest = job_manifest(
        "mcperror",
        [("time__get_current_time", {"timezone": "Nowhere/Atlantis"})],
        ["time__*"],
        mode="single",
    )
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    async with tool_servers([time_server()]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            result = await stack.client.execute_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            await stack.ledger.flush()
            (row,) = await stack.ledger.list_tool_calls("mcperror")
    assert row.status == "failed"
    assert "Nowhere/Atlantis" in (row.error or "")
    assert row.result["isError"] is True  # the server's whole answer is kept
    # The single agent answers with what its tool messages said: the server's error.
    assert result.phase == "Succeeded"
    assert "error: " in result.result and "Nowhere/Atlantis" in result.result


def test_kswarm_run_exits_2_on_an_invalid_tools_file_naming_the_field(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(job_manifest("mcprun4", [], ["x__*"])))
    tools = tmp_path / "tools.yaml"
    tools.write_text("servers: [{name: x, url: 'http://127.0.0.1:9/mcp', command: x}]")
    env = {**os.environ, "KSWARM_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [KSWARM, "run", str(job), "--tools", str(tools)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert "servers[0]: set exactly one of" in done.stderr


async def test_cancelling_a_job_sends_notifications_cancelled_for_its_calls_in_flight(
    kswarm_home: Path, journal: Path
) -> None:
    manifest = job_manifest(
        "mcpcancel", [("led__slow", {"seconds": 60})], ["led__*"], mode="single"
    )
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    async with tool_servers([ledger_server(journal)]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            for _ in range(400):
                if read_journal(journal):
                    break
                await asyncio.sleep(0.05)
            await handle.cancel()
            for _ in range(400):
                if len(read_journal(journal)) == 2:
                    break
                await asyncio.sleep(0.05)
    events = [(e["event"], e["key"]) for e in read_journal(journal)]
    assert [e for e, _ in events] == ["call", "cancelled"]
    assert events[0][1] == events[1][1] == "mcpcancel/single/1/0"


async def test_a_long_running_servers_call_is_a_regular_activity_heartbeating_its_progress(
    kswarm_home: Path, journal: Path
) -> None:
    manifest = job_manifest("mcplong", [("led__slow", {"seconds": 2})], ["led__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    server = ledger_server(journal, long_running=True)
    async with tool_servers([server]) as servers:
        tools = servers.register(demo_tools())
        assert tools.get("led__slow").local is False
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            details: list[Any] = []
            for _ in range(200):
                pending = (await handle.describe()).raw_description.pending_activities
                beats = [p for p in pending if p.HasField("heartbeat_details")]
                if beats:
                    payloads = beats[0].heartbeat_details.payloads
                    details = [json.loads(p.data) for p in payloads]
                    break
                await asyncio.sleep(0.05)
            result = await handle.result()
    assert result.phase == "Succeeded", result.reason
    assert details and details[0]["total"] == 20 and details[0]["progress"] >= 1
    assert details[0]["message"].startswith("step ")
