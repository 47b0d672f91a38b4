"""The critical path of a job's spans: stage structure, not the last-finishing child."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from kswarm.telemetry import spans as attr
from kswarm.telemetry.critical_path import critical_path, format_path
from kswarm.telemetry.ledger_spans import records_from_ledger
from kswarm.telemetry.spans import SpanRecord

UID = "job1"
MAIN = f"{UID}/orchestrator"


def chat(
    agent: str,
    step: int,
    start: float,
    end: float,
    *,
    stage: int | None = None,
    role: str = "subagent",
    status: str = "ok",
    sid: str | None = None,
) -> SpanRecord:
    return SpanRecord(
        span_id=sid or f"c-{agent}-{step}-{start}",
        parent_id=f"a-{agent}",
        name="chat m",
        start=start,
        end=end,
        status=status,
        attributes={
            attr.OPERATION: "chat",
            attr.JOB_UID: UID,
            attr.AGENT_ID: agent,
            attr.AGENT_ROLE: role,
            attr.STAGE: step if role == "orchestrator" else stage,
            attr.STEP: step,
        },
    )


def tool(agent: str, step: int, index: int, start: float, end: float) -> SpanRecord:
    return SpanRecord(
        span_id=f"t-{agent}-{step}-{index}",
        parent_id=f"a-{agent}",
        name="execute_tool search",
        start=start,
        end=end,
        attributes={
            attr.OPERATION: "execute_tool",
            attr.JOB_UID: UID,
            attr.AGENT_ID: agent,
            attr.STEP: step,
            attr.TOOL_INDEX: index,
        },
    )


def main_step(step: int, start: float, end: float) -> SpanRecord:
    return chat(MAIN, step, start, end, role="orchestrator")


def swarm() -> list[SpanRecord]:
    """Stage 1 spawns two sub-agents: ``fast`` takes 4 quick steps, ``slow`` 2 slow ones and
    finishes last. Stage 2 is the orchestrator's final step."""
    spans = [main_step(1, 0.0, 1.0)]
    for k in range(4):  # fast: steps at 1.0-1.5, 1.5-2.0, ... ends at 3.0
        spans.append(chat("fast", k + 1, 1.0 + k * 0.5, 1.0 + k * 0.5 + 0.4, stage=1))
        spans.append(tool("fast", k + 1, 0, 1.4 + k * 0.5, 1.5 + k * 0.5))
    spans.append(chat("slow", 1, 1.0, 3.0, stage=1))
    spans.append(chat("slow", 2, 3.0, 5.0, stage=1))  # finishes last, at 5.0
    spans.append(main_step(2, 5.0, 5.5))
    return spans


def test_parallel_sub_agents_count_the_one_with_most_steps_not_the_last_to_finish() -> None:
    path = critical_path(swarm())
    assert path.steps == 1 + 4 + 1
    assert path.total_steps == 2 + 4 + 2
    assert [
        (s.stage, s.main_steps, s.subagents, s.critical_agent, s.subagent_steps)
        for s in path.stages
    ] == [(1, 1, 2, "fast", 4), (2, 1, 0, None, 0)]
    assert [(n.agent_id, n.step) for n in path.nodes] == [
        (MAIN, 1),
        ("fast", 1),
        ("fast", 2),
        ("fast", 3),
        ("fast", 4),
        (MAIN, 2),
    ]
    # In seconds the slow sub-agent's 4 s beat the fast one's 4 x (0.4 + 0.1) = 2 s.
    assert path.seconds == pytest.approx(1.0 + 4.0 + 0.5)
    assert path.step_path_seconds == pytest.approx(1.0 + 2.0 + 0.5)
    assert path.wall_seconds == pytest.approx(5.5)
    assert path.speedup == pytest.approx(8 / 6, abs=1e-3)


def test_a_last_finishing_child_walk_would_have_followed_the_slow_sub_agent() -> None:
    spans = swarm()
    last = max((s for s in spans if s.attributes[attr.AGENT_ID] != MAIN), key=lambda s: s.end)
    assert last.attributes[attr.AGENT_ID] == "slow"
    assert critical_path(spans).stages[0].critical_agent == "fast"


def test_retried_attempts_are_one_step_and_a_step_that_never_succeeded_is_none() -> None:
    spans = [
        main_step(1, 0.0, 1.0),
        chat("a", 1, 1.0, 1.2, stage=1, status="error"),
        chat("a", 1, 1.3, 1.6, stage=1),  # the retry succeeded: still one step
        chat("b", 1, 1.0, 1.1, stage=1),
        chat("b", 2, 1.2, 1.3, stage=1, status="error"),  # b failed in its second step
        main_step(2, 2.0, 2.1),
    ]
    path = critical_path(spans)
    assert path.stages[0].subagent_steps == 1
    assert path.steps == 3 and path.total_steps == 4
    a = next(n for n in path.nodes if n.agent_id == "a")
    assert (a.start, a.end) == (1.0, 1.6)


def test_single_mode_is_one_long_chain_with_its_tools_in_between() -> None:
    agent = f"{UID}/single"
    spans = []
    for k in range(1, 6):
        spans.append(chat(agent, k, float(k), k + 0.5, role="single"))
        spans.append(tool(agent, k, 0, k + 0.5, k + 0.7))
        spans.append(tool(agent, k, 1, k + 0.5, k + 0.9))
    path = critical_path(spans)
    assert path.steps == path.total_steps == 5
    assert path.main_agent == agent
    assert path.seconds == pytest.approx(5 * (0.5 + 0.4))


def test_only_the_named_jobs_spans_count() -> None:
    other = SpanRecord("x", None, "chat m", 0.0, 9.0, {**swarm()[0].attributes, attr.JOB_UID: "j2"})
    assert critical_path([*swarm(), other], UID).steps == 6
    assert critical_path([], UID).steps == 0


def test_format_path_names_the_critical_sub_agent_and_the_ledgers_verdict() -> None:
    text = format_path(critical_path(swarm()), name="quickstart", ledger_steps=6)
    assert "Critical path of quickstart (job1)" in text
    assert "critical steps  6" in text and "ledger criticalSteps 6: agrees" in text
    assert "fast" in text
    assert "DISAGREES" in format_path(critical_path(swarm()), ledger_steps=7)


def _t(seconds: float) -> datetime:
    return datetime.fromtimestamp(1_700_000_000 + seconds, UTC)


def test_ledger_rows_become_the_same_path_as_spans() -> None:
    job = SimpleNamespace(
        uid=UID,
        name="q",
        namespace="default",
        mode="swarm",
        phase="Succeeded",
        started_at=_t(0),
        created_at=_t(0),
        finished_at=_t(6),
    )
    agents = [
        SimpleNamespace(
            id=MAIN,
            role="orchestrator",
            name="orchestrator",
            stage=0,
            parent_id=None,
            status="Succeeded",
            started_at=_t(0),
            finished_at=_t(6),
        ),
        SimpleNamespace(
            id="tpl",
            role="template",
            name="t",
            stage=None,
            parent_id=MAIN,
            status="Defined",
            started_at=None,
            finished_at=None,
        ),
    ]
    calls = []
    for s in swarm():
        agent = s.attributes[attr.AGENT_ID]
        if agent != MAIN and not any(a.id == agent for a in agents):
            agents.append(
                SimpleNamespace(
                    id=agent,
                    role="subagent",
                    name=agent,
                    stage=1,
                    parent_id=MAIN,
                    status="Succeeded",
                    started_at=_t(1),
                    finished_at=None,
                )
            )
        if s.operation == "chat":
            calls.append(
                SimpleNamespace(
                    agent_id=agent,
                    step=s.attributes[attr.STEP],
                    attempt=1,
                    model="m",
                    pool="p",
                    replica="r",
                    status="ok",
                    input_tokens=1,
                    output_tokens=1,
                    started_at=_t(s.start),
                    latency_seconds=s.end - s.start,
                )
            )
    spawn = SimpleNamespace(
        key="k",
        agent_id=MAIN,
        step=1,
        index=0,
        tool="spawn_subagents",
        status="succeeded",
        finished_at=_t(5),
        duration_seconds=None,
    )
    records = records_from_ledger(job, agents, calls, [spawn])
    path = critical_path(records, UID)
    assert (path.steps, path.total_steps) == (6, 8)
    assert path.stages[0].critical_agent == "fast"
    assert {r.name for r in records} >= {"invoke_workflow", "invoke_agent orchestrator"}
    assert not any(r.attributes.get(attr.TOOL_NAME) == "spawn_subagents" for r in records)
