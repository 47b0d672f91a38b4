"""Spans of real jobs: one trace per job across processes, GenAI names, no duplicates on replay."""

from __future__ import annotations

import os
from pathlib import Path

from telemetry_support import SANDBOX, example, traced_stack
from temporalio.worker import Replayer

from kswarm import telemetry
from kswarm.devserver import DevServer
from kswarm.telemetry import spans as attr
from kswarm.telemetry.interceptors import temporal_plugins
from kswarm.telemetry.receiving import OtlpReceiver
from kswarm.telemetry.spans import SpanRecord
from kswarm.workflows import SubagentWorkflow, SwarmWorkflow

QUICK = example("quickstart")


def _wait_for_job(receiver: OtlpReceiver, uid: str, chats: int) -> list[SpanRecord]:
    """The job's spans, once its root and every chat span have arrived."""
    telemetry.force_flush()

    def complete(spans: list[SpanRecord]) -> bool:
        mine = [s for s in spans if s.attributes.get(attr.JOB_UID) == uid]
        return sum(s.operation == "chat" for s in mine) >= chats and any(
            s.name == "invoke_workflow" for s in mine
        )

    receiver.wait_for(complete, timeout=20)
    return receiver.spans_of_job(uid)


async def test_one_job_is_one_trace_with_parent_links_across_processes(
    temporal: DevServer, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    async with traced_stack(
        temporal.address, tmp_path, pool_in_subprocess=True, otlp_endpoint=receiver.endpoint
    ) as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        await stack.ledger.flush()
        counters = await stack.ledger.job_counters(inp.uid)
        agents = await stack.ledger.list_agents(inp.uid)
        spans = _wait_for_job(receiver, inp.uid, counters.llm_calls)
    assert result.phase == "Succeeded", result.reason

    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans), "a span was exported twice"
    (root,) = [s for s in spans if s.name == "invoke_workflow"]
    assert root.parent_id is None and root.attributes[attr.JOB_NAME] == "quickstart"
    agent_spans = {s.attributes[attr.AGENT_ID]: s for s in spans if s.operation == "invoke_agent"}
    main = agent_spans[f"{inp.uid}/orchestrator"]
    assert main.name == "invoke_agent orchestrator" and main.parent_id == root.span_id
    subagents = [a.id for a in agents if a.role == "subagent"]
    assert set(agent_spans) == {main.attributes[attr.AGENT_ID], *subagents}
    for agent in subagents:
        assert agent_spans[agent].parent_id == main.span_id
        assert agent_spans[agent].attributes[attr.STAGE] == 1

    chats = [s for s in spans if s.operation == "chat"]
    tools = [s for s in spans if s.operation == "execute_tool"]
    assert len(chats) == counters.llm_calls
    assert len(tools) == counters.by_tool["search"]
    for s in chats:
        assert s.parent_id == agent_spans[s.attributes[attr.AGENT_ID]].span_id
        assert s.name == f"chat {s.attributes[attr.REQUEST_MODEL]}"
        assert s.attributes[attr.PROVIDER] == "vllm"
        # Model steps ran in the pool worker's process, everything else in this one.
        assert s.resource["service.name"] == "kswarm-pool-worker"
        assert s.resource["process.pid"] != os.getpid()
    for s in tools:
        assert s.parent_id == agent_spans[s.attributes[attr.AGENT_ID]].span_id
        assert s.name == "execute_tool search" and s.attributes[attr.TOOL_NAME] == "search"
        assert s.resource["process.pid"] == os.getpid()
    assert sum(s.attributes[attr.INPUT_TOKENS] for s in chats) == counters.tokens_input
    assert sum(s.attributes[attr.OUTPUT_TOKENS] for s in chats) == counters.tokens_output


async def test_replayed_workflows_export_no_span_twice(
    temporal: DevServer, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    # Five workflows at once in a cache of two, in Temporal's sandbox: workflows are evicted and
    # replayed from their history again and again while the job runs.
    async with traced_stack(temporal.address, tmp_path, max_cached_workflows=2) as stack:
        inp = stack.job(QUICK)
        handle = await stack.start(inp)
        result = await handle.result()
        await stack.ledger.flush()
        counters = await stack.ledger.job_counters(inp.uid)
        history = await handle.fetch_history()
        spans = _wait_for_job(receiver, inp.uid, counters.llm_calls)
        client = stack.client
    assert result.phase == "Succeeded", result.reason
    assert len({s.span_id for s in spans}) == len(spans)
    assert sum(s.name == "invoke_workflow" for s in spans) == 1
    agent_ids = [s.attributes[attr.AGENT_ID] for s in spans if s.operation == "invoke_agent"]
    assert len(agent_ids) == len(set(agent_ids)) == 1 + result.subagents_spawned
    assert sum(s.operation == "chat" for s in spans) == counters.llm_calls

    # Replaying the recorded history with the same plugin exports nothing of this job. Replay runs
    # no activity, so only workflow-side spans could come from it; a model or tool call's span that
    # ends late (an attempt that timed out under load and finished after its retry) is not replay's,
    # and other tests' background work (tool servers listed again) is not this job's.
    (trace_id,) = {s.trace_id for s in spans}
    before = len(receiver.spans)
    replayer = Replayer(
        workflows=[SwarmWorkflow, SubagentWorkflow],
        workflow_runner=SANDBOX,
        plugins=temporal_plugins(),
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    telemetry.force_flush()
    activity_side = {"chat", "execute_tool"}
    replay_spans = [
        s
        for s in receiver.spans[before:]
        if s.operation not in activity_side
        and (s.trace_id == trace_id or s.attributes.get(attr.JOB_UID) == inp.uid)
    ]
    assert replay_spans == []
    del client
