"""Idempotent writes of jobs, agents, stages, messages and model calls; counters read back."""

from __future__ import annotations

import time

import pytest

from kswarm.ledger import AgentRecord, Ledger, ModelCallRecord, StageRecord, ToolCallKey, repository


def agent(job_uid: str, local: str, **fields: object) -> AgentRecord:
    return AgentRecord(
        id=f"{job_uid}/{local}",
        job_uid=job_uid,
        role=str(fields.pop("role", "subagent")),
        name=local,
        task=f"task of {local}",
        **fields,  # type: ignore[arg-type]
    )


def model_call(
    job_uid: str, agent_id: str, step: int, attempt: int, **fields: object
) -> ModelCallRecord:
    values: dict[str, object] = {
        "job_uid": job_uid,
        "agent_id": agent_id,
        "step": step,
        "attempt": attempt,
        "pool": "sim",
        "model": "sim-1",
        "status": "ok",
        "input_tokens": 100,
        "output_tokens": 10,
        "started_at": time.time(),
        **fields,
    }
    return ModelCallRecord(**values)  # type: ignore[arg-type]


async def test_upsert_job_is_new_once_and_changes_nothing_the_second_time(
    ledger: Ledger, job_uid: str
) -> None:
    again = await ledger.upsert_job(
        uid=job_uid, namespace="other", name="other", mode="single", spec={}
    )

    assert again is False
    job = await ledger.get_job(job_uid)
    assert job is not None
    assert (job.namespace, job.mode, job.phase, job.spec) == (
        "tests",
        "swarm",
        "Running",
        {"task": "test"},
    )


async def test_agents_and_stages_are_written_once(ledger: Ledger, job_uid: str) -> None:
    agents = [agent(job_uid, "main", role="orchestrator"), agent(job_uid, "sub-1", stage=1)]
    await ledger.upsert_agents(agents)
    await ledger.upsert_agents([agent(job_uid, "sub-1", stage=9)])
    stage = StageRecord(index=1, main_steps=1, max_subagent_steps=3, subagents=1)
    await ledger.record_stage(job_uid, stage)
    await ledger.record_stage(
        job_uid, StageRecord(index=1, main_steps=9, max_subagent_steps=9, subagents=9)
    )

    listed = await ledger.list_agents(job_uid)
    assert [(a.name, a.stage) for a in listed] == [("main", None), ("sub-1", 1)]
    (stored,) = await ledger.list_stages(job_uid)
    assert (stored.main_steps, stored.max_subagent_steps, stored.subagents) == (1, 3, 1)


async def test_agent_outcomes_read_many_agents_at_once_and_leave_out_unknown_ones(
    ledger: Ledger, job_uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawn's result reads its children together (in selects of ``AGENTS_PER_SELECT``,
    made small here so that the 7 agents take three)."""
    monkeypatch.setattr(repository, "AGENTS_PER_SELECT", 3)
    await ledger.upsert_agents([agent(job_uid, f"sub-{i}", stage=1) for i in range(7)])
    for i in (1, 5):
        await ledger.update_agent(f"{job_uid}/sub-{i}", status="Succeeded", answer=f"answer {i}")
    wanted = [f"{job_uid}/sub-{i}" for i in (6, 5, 4, 3, 2, 1, 0)] + [f"{job_uid}/gone"]

    outcomes = await ledger.agent_outcomes(wanted)

    assert outcomes == {
        f"{job_uid}/sub-{i}": (
            f"sub-{i}",
            "Succeeded" if i in (1, 5) else "Pending",
            f"answer {i}" if i in (1, 5) else "",
        )
        for i in range(7)
    }
    assert await ledger.agent_outcomes([]) == {}


async def test_last_message_is_the_agents_latest_of_that_role(ledger: Ledger, job_uid: str) -> None:
    """An agent's end reads its last answer alone (its whole conversation stays unread)."""
    agent_id = f"{job_uid}/sub-1"
    await ledger.append_messages(
        job_uid,
        agent_id,
        0,
        [
            {"role": "system", "content": "s"},
            {"role": "assistant", "content": "first"},
            {"role": "tool", "content": "t"},
            {"role": "assistant", "content": "second", "_kswarm": {"step": 2}},
            {"role": "user", "content": "after"},
        ],
    )
    await ledger.append_messages(job_uid, f"{job_uid}/other", 0, [{"role": "assistant"}])

    last = await ledger.last_message(agent_id, "assistant")

    assert last == {"role": "assistant", "content": "second", "_kswarm": {"step": 2}}
    assert await ledger.last_message(agent_id, "developer") is None
    assert await ledger.last_message(f"{job_uid}/nobody", "assistant") is None


async def test_messages_keep_their_order_and_ignore_repeats(ledger: Ledger, job_uid: str) -> None:
    agent_id = f"{job_uid}/main"
    first = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    await ledger.append_messages(job_uid, agent_id, 0, first)
    await ledger.append_messages(job_uid, agent_id, 0, first)  # a retried activity
    await ledger.append_messages(
        job_uid,
        agent_id,
        1,
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
    )

    assert await ledger.get_messages(agent_id) == [*first, {"role": "assistant", "content": "a"}]


async def test_model_calls_written_behind_appear_after_flush_once_per_attempt(
    ledger: Ledger, job_uid: str
) -> None:
    agent_id = f"{job_uid}/main"
    ledger.record_model_call(
        model_call(job_uid, agent_id, 1, 1, status="http_503", http_status=503)
    )
    ledger.record_model_call(model_call(job_uid, agent_id, 1, 2, ttft_seconds=0.1))
    ledger.record_model_call(model_call(job_uid, agent_id, 1, 2, input_tokens=999))  # replayed

    await ledger.flush()

    calls = await ledger.list_model_calls(job_uid)
    assert [(c.attempt, c.status, c.input_tokens) for c in calls] == [
        (1, "http_503", 100),
        (2, "ok", 100),
    ]


async def test_job_counters_sum_tool_calls_model_calls_and_tokens(
    ledger: Ledger, job_uid: str
) -> None:
    agent_id = f"{job_uid}/main"
    for i, (tool, status) in enumerate(
        [("search", "succeeded"), ("search", "failed"), ("fetch", "succeeded")]
    ):
        k = ToolCallKey(job_uid, agent_id, 1, i)
        await ledger.begin_tool_call(k, tool=tool, arguments=None)
        await ledger.finish_tool_call(
            k, status=status, error="boom" if status == "failed" else None
        )
    await ledger.begin_tool_call(
        ToolCallKey(job_uid, agent_id, 1, 0), tool="search", arguments=None
    )
    await ledger.record_refused_tool_call(
        ToolCallKey(job_uid, agent_id, 1, 3), tool="rm", arguments=None, reason="no", call_id=None
    )
    ledger.record_model_call(model_call(job_uid, agent_id, 1, 1, status="timeout"))
    ledger.record_model_call(model_call(job_uid, agent_id, 1, 2))
    ledger.record_model_call(model_call(job_uid, agent_id, 2, 1))
    await ledger.flush()
    assert await ledger.add_tokens(job_uid, 300, 20) == 320
    assert await ledger.add_tokens(job_uid, 5, 5) == 330

    c = await ledger.job_counters(job_uid)

    assert (c.tool_calls_total, c.tool_calls_failed, c.tool_calls_refused) == (4, 1, 1)
    assert c.tool_calls_deduplicated == 1
    assert c.by_tool == {"search": 2, "fetch": 1, "rm": 1}
    assert (c.llm_calls, c.llm_attempts_failed) == (2, 1)
    assert (c.tokens_input, c.tokens_output) == (305, 25)


async def test_find_job_by_uid_name_and_namespace_and_name(ledger: Ledger, job_uid: str) -> None:
    name = f"named-{job_uid}"
    await ledger.upsert_job(uid=f"{job_uid}-2", namespace="tests", name=name, mode="swarm", spec={})

    for ref in (f"{job_uid}-2", name, f"tests/{name}"):
        found = await ledger.find_job(ref)
        assert found is not None and found.uid == f"{job_uid}-2"
    assert await ledger.find_job(f"elsewhere/{name}") is None
