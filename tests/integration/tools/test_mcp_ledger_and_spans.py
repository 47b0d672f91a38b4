"""What the ledger and the traces say about MCP calls: each call records its tool's side-effect
flag (from the real servers' annotations) and its ToolServer; each is an ``execute_tool
SERVER__TOOL`` span carrying ``gen_ai.tool.call.id``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_behaviours import call_named_tools
from mcp_support import git_server, job_manifest, time_server
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import ActivityEnvironment

from kswarm.embedded import SimOptions, embedded_stack
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolRegistry
from kswarm.sim import demo_tools
from kswarm.telemetry import spans as attr
from kswarm.telemetry import tracing
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import ToolBatchInput, ToolCallInput


async def test_each_call_records_its_tools_side_effect_flag_and_server(
    kswarm_home: Path, git_repo: Path, everything_url: str
) -> None:
    """A single agent calls read-only tools (``readOnlyHint``: time's ``get_current_time``,
    git's ``git_status``, server-everything's ``echo``), a destructive one (git's
    ``git_reset``: ``destructiveHint``, also idempotent), a state-changing one without
    ``readOnlyHint`` (server-everything's ``toggle-simulated-logging``) and a built-in tool;
    none of those servers was written here."""
    repo = {"repo_path": str(git_repo)}
    calls = [
        ("time__get_current_time", {"timezone": "UTC"}),
        ("git__git_status", repo),
        ("git__git_reset", repo),
        ("everything__echo", {"message": "hi"}),
        ("everything__toggle-simulated-logging", {}),
        ("search", {"query": "Vaskora"}),
    ]
    tools = ["time__*", "git__*", "everything__*", "search"]
    manifest = job_manifest("mcpflags", calls, tools, mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    everything = ToolServerConfig(name="everything", url=everything_url, timeout_seconds=20)
    async with tool_servers([time_server(), git_server(git_repo), everything]) as servers:
        registry = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=registry) as stack:
            inp = SwarmJobInput.from_manifest(manifest)
            result = await stack.client.execute_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            await stack.ledger.flush()
            rows = {r.tool: r for r in await stack.ledger.list_tool_calls("mcpflags")}
    assert result.phase == "Succeeded", result.reason
    assert {t: rows[t].status for t, _ in calls} == {t: "succeeded" for t, _ in calls}
    recorded = {t: (rows[t].side_effects, rows[t].server) for t, _ in calls}
    assert recorded == {
        "time__get_current_time": (False, "time"),
        "git__git_status": (False, "git"),
        "git__git_reset": (True, "git"),
        "everything__echo": (False, "everything"),
        "everything__toggle-simulated-logging": (True, "everything"),
        "search": (False, None),
    }


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    """kswarm's tracers export into memory for the test (the process's own state restored)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = tracing._tracer, tracing._activity_tracer
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing._tracer, tracing._activity_tracer = saved


async def test_mcp_calls_are_execute_tool_spans_with_the_tool_call_id(
    tmp_path: Path, memory: InMemorySpanExporter
) -> None:
    """The ``run_tools`` activity, as a worker runs it, on calls a model step recorded: one
    that succeeds and one the server answers with ``isError`` (a failed span)."""
    ledger = await Ledger.connect(f"sqlite:///{tmp_path / 'ledger.db'}", migrate=True)
    llm = LLMClient()
    try:
        await ledger.upsert_job(uid="j", namespace="t", name="j", mode="single", spec={})
        tool = "time__get_current_time"
        await ledger.record_model_step(
            job_uid="j",
            agent_id="j/single",
            step=1,
            seq=0,
            messages=[],
            tool_calls=[
                {"index": i, "tool": tool, "arguments": {"timezone": tz}, "status": "pending",
                 "budgeted": True, "side_effects": False, "server": "time"}
                for i, tz in enumerate(["UTC", "Nowhere/Atlantis"])
            ],
            max_tool_calls=None,
        )  # fmt: skip
        async with tool_servers([time_server()]) as servers:
            activities = SwarmActivities(
                ledger, llm, PoolRegistry(), servers.register(demo_tools())
            )
            batch = ToolBatchInput(
                calls=[ToolCallInput("j", "j/single", 1, i, tool) for i in range(2)]
            )
            done = await ActivityEnvironment().run(activities.run_tools, batch)
    finally:
        await llm.aclose()
        await ledger.close()
    assert [r.status for r in done.results] == ["succeeded", "failed"]
    spans = sorted(memory.get_finished_spans(), key=lambda s: s.attributes[attr.TOOL_INDEX])
    assert [s.name for s in spans] == [f"execute_tool {tool}"] * 2
    for i, span in enumerate(spans):
        assert span.attributes[attr.OPERATION] == "execute_tool"
        assert span.attributes[attr.TOOL_NAME] == tool
        assert span.attributes[attr.TOOL_CALL_ID] == f"j/single/1/{i}"  # the ledger's key
        assert span.attributes[attr.JOB_UID] == "j"
    assert spans[0].status.status_code.name == "UNSET"
    assert spans[1].status.status_code.name == "ERROR"
    assert spans[1].attributes[attr.ERROR_TYPE] == "tool_failed"
