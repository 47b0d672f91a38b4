"""Model steps stored set-based: a batch gives what its steps give one after another, in fewer
statements. Each case runs the same steps twice on real databases (SQLite and PostgreSQL), once
as one batch in one transaction, once step by step, for two jobs alike, and compares."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kswarm.ledger import Ledger, engines, models
from kswarm.ledger.records import AgentEnd, AgentRecord
from kswarm.ledger.repository import utcnow
from kswarm.ledger.step_writes import RecordModelSteps, StepItem, StepStatements


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    created = engines.create_engine_for(database_url, pool_size=1, writer=True)
    try:
        yield created
    finally:
        await created.dispose()


@contextmanager
def counted(engine: AsyncEngine) -> Iterator[list[str]]:
    """The statements sent to the database meanwhile (an ``executemany`` counts once; SQLite's
    ``BEGIN IMMEDIATE`` does not count)."""
    sent: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


async def new_job(ledger: Ledger, agents: int) -> str:
    uid = f"job-{uuid.uuid4().hex[:12]}"
    await ledger.upsert_job(uid=uid, namespace="t", name=uid, mode="swarm", spec={"task": "t"})
    await ledger.upsert_agents(
        [
            AgentRecord(id=f"{uid}/sub-{a}", job_uid=uid, role="subagent", name=f"s{a}", task="t")
            for a in range(agents)
        ]
    )
    return uid


def step(
    uid: str,
    agent: int,
    n_calls: int,
    *,
    number: int = 1,
    budget: int | None = 100,
    finish: AgentEnd | None = None,
) -> StepItem:
    agent_id = f"{uid}/sub-{agent}"
    calls = [
        {"index": i, "tool": "search", "arguments": {"q": i}, "status": "pending", "budgeted": True}
        for i in range(n_calls)
    ]
    calls.append({"index": n_calls, "tool": "note", "arguments": {}, "status": "succeeded"})
    message = {"role": "assistant", "content": f"{agent}/{number}"}
    row = {"job_uid": uid, "agent_id": agent_id, "seq": number, "role": "assistant"}
    return StepItem(
        job_uid=uid,
        agent_id=agent_id,
        step=number,
        messages=[row | {"content": message, "created_at": utcnow()}],
        tool_calls=calls,
        max_tool_calls=budget,
        input_tokens=10 * agent + number,
        output_tokens=agent,
        finish=finish,
        now=utcnow(),
    )


async def state(engine: AsyncEngine, uid: str) -> dict[str, Any]:
    """What the ledger holds of job ``uid``, with the job's name taken out of the ids."""
    J, A, C, M = models.Job, models.Agent, models.ToolCall, models.Message
    async with engine.connect() as conn:
        job = (
            await conn.execute(
                select(J.tool_calls_reserved, J.tokens_input, J.tokens_output).where(J.uid == uid)
            )
        ).one()
        agents = await conn.execute(
            select(A.id, A.steps, A.status, A.answer).where(A.job_uid == uid).order_by(A.id)
        )
        calls = await conn.execute(
            select(C.agent_id, C.step, C.index, C.status, C.error)
            .where(C.job_uid == uid)
            .order_by(C.agent_id, C.step, C.index)
        )
        messages = await conn.execute(select(M.agent_id, M.seq).where(M.job_uid == uid))
        return {
            "job": tuple(job),
            "agents": [(a.removeprefix(uid), *rest) for a, *rest in agents],
            "calls": [(a.removeprefix(uid), *rest) for a, *rest in calls],
            "messages": sorted((a.removeprefix(uid), s) for a, s in messages),
        }


async def both_ways(
    engine: AsyncEngine, batch: list[StepItem], uids: tuple[str, str]
) -> tuple[list[Any], list[Any], list[str]]:
    """``batch`` (built for ``uids[0]``) as one batch, and the same steps of ``uids[1]`` one at
    a time: both results with the job's name taken out, and the batch's statements."""
    kind = RecordModelSteps(StepStatements(engine.dialect.name))
    first, second = uids
    alike = [step_like(item, first, second) for item in batch]
    async with engine.connect() as conn:
        with counted(engine) as sent:
            async with conn.begin():
                together = list(await kind.run(conn, batch))
        one_by_one = []
        for item in alike:
            async with conn.begin():
                one_by_one += await kind.run(conn, [item])
    return together, one_by_one, sent


def step_like(item: StepItem, first: str, second: str) -> StepItem:
    """``item`` for job ``second`` in place of ``first``."""
    messages = [
        m | {"job_uid": second, "agent_id": m["agent_id"].replace(first, second)}
        for m in item.messages
    ]
    return replace(
        item, job_uid=second, agent_id=item.agent_id.replace(first, second), messages=messages
    )


async def test_a_batch_within_budget_is_stored_in_a_few_statements(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    uids = (await new_job(ledger, 20), await new_job(ledger, 20))
    end = AgentEnd(status="Succeeded", answer="found it")
    batch = [step(uids[0], a, 3, finish=end if a % 4 == 0 else None) for a in range(20)]

    together, one_by_one, sent = await both_ways(engine, batch, uids)

    assert together == one_by_one
    # Each step sees the job's tokens up to and including its own.
    assert [total for _, total in together] == [
        sum(11 * a + 1 for a in range(k + 1)) for k in range(20)
    ]
    assert all(r["status"] == "pending" for rows, _ in together for r in rows[:3])
    a, b = await state(engine, uids[0]), await state(engine, uids[1])
    assert a == b
    assert a["job"][0] == 60
    assert ("/sub-4", 1, "Succeeded", "found it") in a["agents"]
    assert ("/sub-5", 1, "Pending", None) in a["agents"]
    # One select, one budget update, and one statement each for messages, calls, steps, ends;
    # step by step it would be five or more a step. (SQLite sends an executemany once.)
    assert len(sent) <= 6, sent


async def test_a_batch_beyond_the_budget_refuses_what_one_by_one_refuses(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    uids = (await new_job(ledger, 6), await new_job(ledger, 6))
    batch = [step(uids[0], a, 4, budget=10) for a in range(6)]

    together, one_by_one, _ = await both_ways(engine, batch, uids)

    assert together == one_by_one
    statuses = [r["status"] for rows, _ in together for r in rows if r["tool"] == "search"]
    assert statuses == ["pending"] * 10 + ["refused"] * 14
    a, b = await state(engine, uids[0]), await state(engine, uids[1])
    assert a == b and a["job"][0] == 10


async def test_a_step_twice_in_a_batch_and_a_stored_step_are_stored_once(
    ledger: Ledger, engine: AsyncEngine
) -> None:
    uids = (await new_job(ledger, 3), await new_job(ledger, 3))
    # Agent 0's first step is stored before (a retried activity), then comes again, twice.
    kind = RecordModelSteps(StepStatements(engine.dialect.name))
    async with engine.connect() as conn:
        for uid in uids:
            async with conn.begin():
                await kind.run(conn, [step(uid, 0, 2)])
    batch = [step(uids[0], 0, 2), step(uids[0], 1, 2), step(uids[0], 1, 2), step(uids[0], 2, 1)]

    together, one_by_one, _ = await both_ways(engine, batch, uids)

    assert together == one_by_one
    assert together[1][0] == together[2][0]
    a, b = await state(engine, uids[0]), await state(engine, uids[1])
    assert a == b
    assert a["job"][0] == 5  # 2 + 2 + 1: a step's calls reserve once however often it comes
    assert len(a["calls"]) == 3 + 3 + 2
