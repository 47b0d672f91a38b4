"""Human approval: a call of a ``requireApproval`` tool waits, durably, for a person's decision;
an approved call runs once, a denied one never reaches the server and the denial is the model's
answer; who decided and when is in the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mcp_behaviours import call_named_tools
from mcp_support import job_manifest, ledger_server, read_journal

from kswarm.approving import decide
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.approvals import ToolCallDecision


async def test_approved_calls_run_and_denied_calls_answer_the_model(
    kswarm_home: Path, journal: Path
) -> None:
    calls = [("led__append", {"text": "keep"}), ("led__append", {"text": "drop"})]
    manifest = job_manifest("mcpapprove", calls, ["led__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    server = ledger_server(journal, require_approval=("append",))
    keep, drop = "mcpapprove/single/1/0", "mcpapprove/single/1/1"
    async with tool_servers([server]) as servers:
        tools = servers.register(demo_tools())
        assert tools.get("led__append").require_approval
        assert not tools.get("led__read").require_approval
        async with embedded_stack(sim=sim, tools=tools) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            waiting: list[str] = []
            for _ in range(400):
                waiting = await handle.query("waiting_for_approval")
                if len(waiting) == 2:
                    break
                await asyncio.sleep(0.05)
            assert sorted(waiting) == [keep, drop]
            await stack.ledger.flush()
            rows = await stack.ledger.list_tool_calls("mcpapprove")
            assert {r.status for r in rows} == {"awaiting"}
            await asyncio.sleep(0.5)  # nothing runs while it waits
            assert read_journal(journal) == []
            await decide(stack.client, "mcpapprove", keep, ToolCallDecision(keep, True, "alice"))
            await decide(
                stack.client, "mcpapprove", drop, ToolCallDecision(drop, False, "bob", "too risky")
            )
            result = await handle.result()
            await stack.ledger.flush()
            rows = {r.key: r for r in await stack.ledger.list_tool_calls("mcpapprove")}
    assert result.phase == "Succeeded", result.reason
    assert [e["key"] for e in read_journal(journal)] == [keep]
    assert rows[keep].status == "succeeded"
    assert rows[keep].approval["approved"] is True and rows[keep].approval["by"] == "alice"
    assert rows[keep].approval["at"]
    assert rows[drop].status == "failed" and rows[drop].error == "denied by bob: too risky"
    assert rows[drop].approval["by"] == "bob" and rows[drop].approval["reason"] == "too risky"
    assert "error: denied by bob: too risky" in result.result
