"""``kswarm approve`` and ``kswarm deny`` as a person runs them, against a real job waiting on the
embedded stack behind ``mcp-server-time`` (``requireApproval``): the same
:func:`kswarm.approving.send` as the dashboard's buttons."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from mcp_behaviours import call_named_tools
from mcp_support import BIN, job_manifest

from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig
from kswarm.workflows import SwarmJobInput, SwarmWorkflow

KSWARM = str(BIN / "kswarm")
UID = "cliapprove"


def kswarm(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KSWARM_TEMPORAL_ADDRESS": address}
    return subprocess.run(
        [KSWARM, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


async def test_kswarm_approve_and_deny_decide_waiting_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KSWARM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KSWARM_DATABASE_URL", raising=False)
    calls = [("time__get_current_time", {"timezone": tz}) for tz in ("UTC", "Asia/Tokyo")]
    manifest = job_manifest(UID, calls, ["time__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    server = ToolServerConfig(
        name="time", command=str(BIN / "mcp-server-time"), require_approval=("*",)
    )
    keep, drop = f"{UID}/single/1/0", f"{UID}/single/1/1"
    async with tool_servers([server]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            for _ in range(400):
                if len(await handle.query("waiting_for_approval")) == 2:
                    break
                await asyncio.sleep(0.05)
            address = stack.server.address
            approved = await asyncio.to_thread(
                kswarm, address, "approve", UID, keep, "--by", "carol"
            )
            denied = await asyncio.to_thread(
                kswarm, address, "deny", UID, drop, "--by", "dave", "--reason", "no"
            )
            result = await handle.result()
            await stack.ledger.flush()
            rows = {r.key: r for r in await stack.ledger.list_tool_calls(UID)}
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"{keep}: approved by carol"
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout.strip() == f"{drop}: denied by dave"
    assert result.phase == "Succeeded", result.reason
    assert rows[keep].status == "succeeded" and rows[keep].approval["by"] == "carol"
    assert rows[drop].status == "failed" and rows[drop].error == "denied by dave: no"
