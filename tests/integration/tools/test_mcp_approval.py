"""Human approval: a call of a ``requireApproval`` tool waits, durably, for a person's decision;
an approved call runs once, a denied one never reaches the server and the denial is the model's
answer; who decided and when is in the ledger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp_behaviours import call_named_tools
from mcp_support import job_manifest, ledger_server, read_journal, time_server

from kswarm.approving import decide
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.errors import SpecError
from kswarm.operator.approvals import APPROVE, DENY, apply_decisions
from kswarm.operator.runtime import OperatorConfig, Runtime
from kswarm.sim import demo_tools
from kswarm.spec import parse_manifest
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import server_entry
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


async def test_the_operator_carries_out_decision_annotations_and_names_bad_calls(
    kswarm_home: Path, journal: Path
) -> None:
    """The operator's annotation path (:func:`kswarm.operator.approvals.apply_decisions`) on the
    embedded stack's Temporal and ledger: the object body is a dict as the API server sends it,
    and the Events it would post are collected (the seam to Kubernetes, which the e2e test
    crosses for real)."""
    calls = [("led__append", {"text": "a"}), ("led__append", {"text": "b"})]
    manifest = job_manifest("annot", calls, ["led__*"], mode="single", requireApproval=["led__*"])
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    posted: list[tuple[str, str, str]] = []

    def post(kind: str, reason: str, message: str) -> None:
        posted.append((kind, reason, message))

    def body(**annotations: str) -> dict[str, Any]:
        managed = {"f:metadata": {"f:annotations": {f"f:{k}": {} for k in annotations}}}
        return {
            "metadata": {
                "annotations": annotations,
                "managedFields": [{"manager": "kubectl-annotate", "fieldsV1": managed}],
            }
        }

    async with tool_servers([ledger_server(journal)]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            rt = Runtime(OperatorConfig(), temporal=stack.client, _ledger=stack.ledger)
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            assert await _wait_for(handle, 2) == ["annot/single/1/0", "annot/single/1/1"]
            await stack.ledger.flush()
            sent: set[str] = set()
            bad = body(**{APPROVE: "single/7/0,nonsense", DENY: "single/1/1"})
            assert await apply_decisions(rt, bad, "annot", post, sent)
            assert sent == set()
            assert [p[1] for p in posted] == ["ApprovalNotApplied"] * 3
            assert "'single/1/1' is not CALL=REASON" in posted[0][2]
            assert "'annot/nonsense'" in posted[1][2]
            assert "tool call 'annot/single/7/0' is not waiting for approval" in posted[2][2]
            posted.clear()
            good = body(**{APPROVE: "*", DENY: "annot/single/1/1=wrong file"})
            assert await apply_decisions(rt, good, "annot", post, sent)
            assert await apply_decisions(rt, good, "annot", post, sent)  # a stale repeat
            result = await handle.result()
            await stack.ledger.flush()
            rows = {r.key: r for r in await stack.ledger.list_tool_calls("annot")}
    assert posted == [
        (
            "Normal",
            "ToolCallApproved",
            "annot/single/1/0 (led__append) approved by kubectl-annotate",
        ),
        (
            "Normal",
            "ToolCallDenied",
            "annot/single/1/1 (led__append) denied by kubectl-annotate: wrong file",
        ),
    ]
    assert result.phase == "Succeeded"
    assert [e["key"] for e in read_journal(journal)] == ["annot/single/1/0"]
    assert rows["annot/single/1/0"].approval["by"] == "kubectl-annotate"
    assert rows["annot/single/1/1"].error == "denied by kubectl-annotate: wrong file"


def test_kswarm_run_exits_2_naming_a_tool_to_approve_no_server_lists(tmp_path: Path) -> None:
    """``kswarm run --tools`` checks ``spec.requireApproval`` against what the servers list."""
    calls = [("time__get_current_time", {"timezone": "UTC"})]
    gated = ["time__get_current_time", "time__no_such_tool"]
    job = tmp_path / "job.yaml"
    manifest = job_manifest("gaterun", calls, ["time__*"], requireApproval=gated)
    job.write_text(yaml.safe_dump(manifest))
    tools = tmp_path / "tools.yaml"
    tools.write_text(yaml.safe_dump({"servers": [server_entry(time_server())]}))
    env = {**os.environ, "KSWARM_HOME": str(tmp_path / "home")}
    env.pop("KSWARM_DATABASE_URL", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kswarm"), "run", str(job), "--tools", str(tools)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "spec.requireApproval[1]: unknown tool 'time__no_such_tool'" in done.stderr
