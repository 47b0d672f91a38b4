"""Human approval: a call of a ``requireApproval`` tool waits, durably, for a person's decision;
an approved call runs once, a denied one never reaches the server and the denial is the model's
answer; who decided and when is in the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mcp_behaviours import call_named_tools
from mcp_support import job_manifest, ledger_server, read_journal

from kswarm.approving import decide
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.errors import SpecError
from kswarm.sim import demo_tools
from kswarm.spec import parse_manifest
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


async def _wait_for(handle: Any, count: int) -> list[str]:
    waiting: list[str] = []
    for _ in range(400):
        waiting = await handle.query("waiting_for_approval")
        if len(waiting) == count:
            break
        await asyncio.sleep(0.05)
    return sorted(waiting)


async def test_a_job_marks_tools_of_a_server_that_does_not(
    kswarm_home: Path, journal: Path
) -> None:
    """``spec.requireApproval`` gates calls by exact name and by ``SERVER__*``, on a server that
    marks nothing; a tool on neither list runs without a decision."""
    calls = [("led__append", {"text": "a"}), ("led__read", {})]
    exact = job_manifest(
        "jobgate", calls, ["led__*"], mode="single", requireApproval=["led__append"]
    )
    wildcard = job_manifest(
        "jobgatestar", calls, ["led__*"], mode="single", requireApproval=["led__*"]
    )
    plain = job_manifest("jobnogate", calls, ["led__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    async with tool_servers([ledger_server(journal)]) as servers:
        tools = servers.register(demo_tools())
        assert not tools.get("led__append").require_approval
        async with embedded_stack(sim=sim, tools=tools) as stack:
            handles = {}
            for m in (exact, wildcard, plain):
                inp = SwarmJobInput.from_manifest(m)
                handles[m["metadata"]["uid"]] = await stack.client.start_workflow(
                    SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
                )
            assert (await handles["jobnogate"].result()).phase == "Succeeded"
            assert await _wait_for(handles["jobgate"], 1) == ["jobgate/single/1/0"]
            assert await _wait_for(handles["jobgatestar"], 2) == [
                "jobgatestar/single/1/0",
                "jobgatestar/single/1/1",
            ]
            await stack.ledger.flush()
            rows = {r.key: r.status for r in await stack.ledger.list_tool_calls("jobgatestar")}
            assert set(rows.values()) == {"awaiting"}
            key = "jobgate/single/1/0"
            await decide(stack.client, "jobgate", key, ToolCallDecision(key, True, "carol"))
            for k in ("jobgatestar/single/1/0", "jobgatestar/single/1/1"):
                await decide(stack.client, "jobgatestar", k, ToolCallDecision(k, False, "d", "no"))
            results = {u: await h.result() for u, h in handles.items()}
            await stack.ledger.flush()
            gate_rows = {r.key: r for r in await stack.ledger.list_tool_calls("jobgate")}
    assert {u: r.phase for u, r in results.items()} == dict.fromkeys(handles, "Succeeded")
    seen = {e["key"] for e in read_journal(journal)}
    assert {"jobnogate/single/1/0", "jobnogate/single/1/1"} <= seen
    assert {"jobgate/single/1/0", "jobgate/single/1/1"} <= seen
    assert not any(k.startswith("jobgatestar/") for k in seen)  # denied: never reached it
    assert gate_rows["jobgate/single/1/0"].approval["by"] == "carol"
    assert gate_rows["jobgate/single/1/1"].approval is None  # read: no decision asked


def test_a_job_naming_an_unknown_tool_to_approve_is_refused_naming_the_field() -> None:
    """``kswarm run`` checks ``spec.requireApproval`` against the tools it knows, as it checks
    ``spec.tools``."""
    calls = [("search", {"query": "q"})]
    manifest = job_manifest("x", calls, ["search"], requireApproval=["search", "nosuch__*"])
    with pytest.raises(SpecError) as e:
        parse_manifest(manifest, known_tools=[*demo_tools().names(), "led__append"])
    assert "spec.requireApproval[1]" in str(e.value) and "'nosuch'" in str(e.value)
