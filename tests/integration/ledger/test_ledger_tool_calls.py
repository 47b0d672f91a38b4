"""Exactly-once tool calls: every key runs once, however callers race, retry or repeat."""

from __future__ import annotations

import asyncio

import pytest

from kswarm.errors import LedgerUnavailable
from kswarm.ledger import Ledger, ToolCallKey
from kswarm.ledger import tool_calls as tc
from kswarm.ledger import tool_results as tr
from kswarm.ledger.repository import utcnow


def key(job_uid: str, agent: str = "sub-1", step: int = 1, index: int = 0) -> ToolCallKey:
    return ToolCallKey(job_uid, f"{job_uid}/{agent}", step, index)


async def test_first_begin_reserves_budget_and_runs(ledger: Ledger, job_uid: str) -> None:
    begin = await ledger.begin_tool_call(
        key(job_uid), tool="search", arguments={"q": "x"}, max_tool_calls=10
    )

    assert (begin.outcome, begin.attempt, begin.arguments) == ("run", 1, {"q": "x"})
    job = await ledger.get_job(job_uid)
    assert job is not None and job.tool_calls_reserved == 1


async def test_stored_result_comes_back_and_counts_as_deduplicated(
    ledger: Ledger, job_uid: str
) -> None:
    k = key(job_uid)
    await ledger.begin_tool_call(k, tool="search", arguments={"q": "x"}, max_tool_calls=10)
    await ledger.finish_tool_call(k, status="succeeded", result={"hits": [1, 2]})

    again = await ledger.begin_tool_call(k, tool="search", arguments={"q": "x"}, max_tool_calls=10)

    assert (again.outcome, again.status, again.result) == ("stored", "succeeded", {"hits": [1, 2]})
    counters = await ledger.job_counters(job_uid)
    assert (counters.tool_calls_total, counters.tool_calls_deduplicated) == (1, 1)
    job = await ledger.get_job(job_uid)
    assert job is not None and job.tool_calls_reserved == 1


async def test_key_started_without_result_runs_again_as_attempt_two(
    ledger: Ledger, job_uid: str
) -> None:
    k = key(job_uid)
    first = await ledger.begin_tool_call(k, tool="search", arguments={"q": "x"})
    second = await ledger.begin_tool_call(k, tool="search", arguments={"q": "x"})

    assert (first.outcome, first.attempt) == ("run", 1)
    assert (second.outcome, second.attempt, second.arguments) == ("run", 2, {"q": "x"})
    (row,) = await ledger.get_tool_calls(k.agent_id)
    assert (row.status, row.attempts) == ("started", 2)


async def test_key_whose_owner_task_died_runs_again_in_another_task(
    ledger: Ledger, job_uid: str
) -> None:
    k = key(job_uid)
    first = await asyncio.create_task(ledger.begin_tool_call(k, tool="t", arguments=None))
    second = await asyncio.create_task(ledger.begin_tool_call(k, tool="t", arguments=None))

    assert (first.attempt, second.outcome, second.attempt) == (1, "run", 2)


async def test_budget_exhaustion_refuses_new_keys_but_not_stored_ones(
    ledger: Ledger, job_uid: str
) -> None:
    outcomes = []
    for i in range(4):
        begin = await ledger.begin_tool_call(
            key(job_uid, index=i), tool="t", arguments=None, max_tool_calls=3
        )
        outcomes.append(begin.outcome)
        if begin.outcome == "run":
            await ledger.finish_tool_call(key(job_uid, index=i), status="succeeded", result=i)
    stored = await ledger.begin_tool_call(
        key(job_uid, index=0), tool="t", arguments=None, max_tool_calls=3
    )

    assert outcomes == ["run", "run", "run", "budget_exhausted"]
    assert stored.outcome == "stored"
    job = await ledger.get_job(job_uid)
    assert job is not None and job.tool_calls_reserved == 3


async def test_concurrent_begins_within_one_batch_never_overspend_the_budget(
    ledger: Ledger, job_uid: str
) -> None:
    begins = await asyncio.gather(
        *(
            ledger.begin_tool_call(key(job_uid, index=i), tool="t", arguments=i, max_tool_calls=7)
            for i in range(20)
        )
    )

    assert sorted(b.outcome for b in begins) == ["budget_exhausted"] * 13 + ["run"] * 7
    job = await ledger.get_job(job_uid)
    assert job is not None and job.tool_calls_reserved == 7


async def test_hundred_concurrent_calls_on_distinct_keys_are_each_recorded_once(
    ledger: Ledger, job_uid: str
) -> None:
    async def call(i: int) -> str:
        k = key(job_uid, agent=f"sub-{i % 10}", step=i // 10, index=i % 3)
        begin = await ledger.begin_tool_call(k, tool="search", arguments={"i": i})
        await ledger.finish_tool_call(k, status="succeeded", result={"i": i}, duration_seconds=0.1)
        return begin.outcome

    outcomes = await asyncio.gather(*(call(i) for i in range(100)))

    assert outcomes == ["run"] * 100
    rows = await ledger.list_tool_calls(job_uid)
    assert len(rows) == len({r.key for r in rows}) == 100
    assert {r.status for r in rows} == {"succeeded"}
    assert all(r.result == r.arguments for r in rows)
    assert all(r.attempts == 1 and r.deduplicated == 0 for r in rows)


async def test_fifty_concurrent_calls_of_the_same_key_run_the_tool_once(
    ledger: Ledger, job_uid: str
) -> None:
    k = key(job_uid)
    runs = 0

    async def activity() -> str:
        nonlocal runs
        begin = await ledger.begin_tool_call(k, tool="search", arguments={"q": "same"})
        if begin.outcome == "run":
            runs += 1
            await asyncio.sleep(0.01)  # the tool works while the others wait
            await ledger.finish_tool_call(k, status="succeeded", result="done")
            return "run"
        assert (begin.outcome, begin.result) == ("stored", "done")
        return begin.outcome

    outcomes = await asyncio.gather(*(activity() for _ in range(50)))

    assert runs == 1
    assert sorted(outcomes) == ["run"] + ["stored"] * 49
    (row,) = await ledger.get_tool_calls(k.agent_id)
    assert (row.attempts, row.deduplicated, row.result) == (1, 49, "done")


async def test_finish_keeps_the_first_outcome(ledger: Ledger, job_uid: str) -> None:
    k = key(job_uid)
    await ledger.begin_tool_call(k, tool="t", arguments=None)
    await asyncio.gather(
        ledger.finish_tool_call(k, status="succeeded", result="first"),
        ledger.finish_tool_call(k, status="failed", error="second"),
    )
    await ledger.finish_tool_call(k, status="failed", error="late")

    (row,) = await ledger.get_tool_calls(k.agent_id)
    assert (row.status, row.result, row.error) == ("succeeded", "first", None)


async def test_refused_calls_are_recorded_once_and_never_run(ledger: Ledger, job_uid: str) -> None:
    k = key(job_uid)
    for _ in range(2):
        await ledger.record_refused_tool_call(
            k, tool="rm", arguments={"path": "/"}, reason="not allowed", call_id="c1"
        )
    begin = await ledger.begin_tool_call(k, tool="rm", arguments={"path": "/"})

    assert (begin.outcome, begin.status, begin.error) == ("stored", "refused", "not allowed")
    counters = await ledger.job_counters(job_uid)
    assert (counters.tool_calls_total, counters.tool_calls_refused) == (1, 1)


@pytest.mark.parametrize(
    "repeat",
    [pytest.param(False, id="distinct-keys"), pytest.param(True, id="repeated-key")],
)
async def test_a_batch_of_begins_matches_running_them_one_by_one(
    ledger: Ledger, job_uid: str, repeat: bool
) -> None:
    now = utcnow()
    items = [
        tc.BeginItem(
            key=str(key(job_uid, index=0 if repeat else i)),
            job_uid=job_uid,
            agent_id=f"{job_uid}/sub-1",
            step=1,
            index=0 if repeat else i,
            tool="t",
            arguments={"i": i},
            call_id=None,
            max_tool_calls=100,
            now=now,
        )
        for i in range(5)
    ]
    kind = tc.BeginToolCalls(ledger.dialect)
    async with ledger.engine.begin() as conn:
        results = await kind.run(conn, items)

    if repeat:
        assert [(r.outcome, r.attempt) for r in results] == [("run", n) for n in range(1, 6)]
    else:
        assert [(r.outcome, r.attempt, r.arguments) for r in results] == [
            ("run", 1, {"i": i}) for i in range(5)
        ]


async def test_a_batch_of_finishes_keeps_the_first_outcome_of_each_key(
    ledger: Ledger, job_uid: str
) -> None:
    keys = [key(job_uid, index=i) for i in range(3)]
    for k in keys:
        await ledger.begin_tool_call(k, tool="t", arguments=None)
    now = utcnow()
    items = [
        tr.FinishItem(key=str(k), status="succeeded", result={"n": n}, error=None,
                      duration_seconds=0.5, now=now)
        for n, k in enumerate([*keys, keys[0]])
    ]  # fmt: skip
    async with ledger.engine.begin() as conn:
        await tr.FinishToolCalls(ledger.dialect).run(conn, items)

    rows = await ledger.get_tool_calls(keys[0].agent_id)
    assert [(r.status, r.result, r.duration_seconds) for r in rows] == [
        ("succeeded", {"n": n}, 0.5) for n in range(3)
    ]


async def test_one_bad_write_in_a_batch_does_not_fail_its_neighbours(
    ledger: Ledger, job_uid: str
) -> None:
    good = [ledger.begin_tool_call(key(job_uid, index=i), tool="t", arguments=i) for i in range(9)]
    orphan = ledger.begin_tool_call(key("no-such-job"), tool="t", arguments=None)

    results = await asyncio.gather(*good, orphan, return_exceptions=True)

    assert [r.outcome for r in results[:9]] == ["run"] * 9  # type: ignore[union-attr]
    assert isinstance(results[9], Exception)
    assert len(await ledger.list_tool_calls(job_uid)) == 9


async def test_two_processes_racing_on_the_same_keys_neither_fail_nor_overspend(
    ledger: Ledger, job_uid: str
) -> None:
    other = await Ledger.connect(ledger.url)  # its own engine and claims: another process
    keys = [key(job_uid, index=i) for i in range(30)]

    async def begin(on: Ledger, k: ToolCallKey) -> int:
        for _ in range(50):
            try:
                b = await on.begin_tool_call(k, tool="t", arguments=None, max_tool_calls=100)
            except LedgerUnavailable:  # SQLite: the other writer holds the lock
                await asyncio.sleep(0.02)
                continue
            assert b.outcome == "run"
            return b.attempt
        raise AssertionError(f"{k}: never began")

    try:
        attempts = await asyncio.gather(*(begin(on, k) for k in keys for on in (ledger, other)))
    finally:
        await other.close()

    # Across processes a started key looks abandoned, so the later one runs it again.
    assert sorted(attempts) == [1] * 30 + [2] * 30
    job = await ledger.get_job(job_uid)
    assert job is not None and job.tool_calls_reserved == 30
    assert len(await ledger.list_tool_calls(job_uid)) == 30


async def test_the_side_effect_flag_and_server_are_stored_with_the_call(
    ledger: Ledger, job_uid: str
) -> None:
    """Every way a call row is first written keeps the tool's flag and MCP server: a model
    step's calls, a single begin (PostgreSQL: its one-statement path) and a batch that runs
    into its budget (PostgreSQL: the insert of the general path). A known key keeps what was
    recorded first; a call of no registered tool (a control) keeps NULL."""
    agent = f"{job_uid}/sub-1"
    await ledger.record_model_step(
        job_uid=job_uid,
        agent_id=agent,
        step=1,
        seq=0,
        messages=[],
        tool_calls=[
            {"index": 0, "tool": "time__get_current_time", "arguments": {}, "status": "pending",
             "budgeted": True, "side_effects": False, "server": "time"},
            {"index": 1, "tool": "led__append", "arguments": {}, "status": "pending",
             "budgeted": True, "side_effects": True, "server": "led"},
            {"index": 2, "tool": "finish", "arguments": {}, "status": "succeeded",
             "kind": "finish"},
        ],
        max_tool_calls=None,
    )  # fmt: skip
    # The tool activity's begin of a recorded key changes neither.
    again = await ledger.begin_tool_call(
        key(job_uid, step=1, index=0), tool="time__get_current_time", arguments=None,
        side_effects=True, server="other",
    )  # fmt: skip
    assert again.outcome == "run"
    await ledger.begin_tool_call(
        key(job_uid, step=2, index=0), tool="search", arguments={}, side_effects=False
    )
    await ledger.begin_tool_call(
        key(job_uid, step=2, index=1), tool="led__append", arguments={}, side_effects=True,
        server="led",
    )  # fmt: skip
    now = utcnow()
    items = [
        tc.BeginItem(
            key=str(key(job_uid, step=3, index=i)), job_uid=job_uid, agent_id=agent, step=3,
            index=i, tool="everything__echo", arguments={}, call_id=None, max_tool_calls=5,
            now=now, side_effects=i % 2 == 1, server="everything",
        )
        for i in range(5)
    ]  # fmt: skip
    async with ledger.engine.begin() as conn:
        results = await tc.BeginToolCalls(ledger.dialect).run(conn, items)
    assert [r.outcome for r in results] == ["run"] * 3 + ["budget_exhausted"] * 2

    rows = {(r.step, r.index): r for r in await ledger.get_tool_calls(agent)}
    stored = {k: (bool(r.side_effects) if r.side_effects is not None else None, r.server)
              for k, r in rows.items()}  # fmt: skip
    assert stored == {
        (1, 0): (False, "time"),
        (1, 1): (True, "led"),
        (1, 2): (None, None),
        (2, 0): (False, None),
        (2, 1): (True, "led"),
        (3, 0): (False, "everything"),
        (3, 1): (True, "everything"),
        (3, 2): (False, "everything"),
    }


async def test_model_steps_reserve_the_budget_for_their_calls_and_add_up_their_tokens(
    ledger: Ledger, job_uid: str
) -> None:
    """A step's calls take the budget while it has room (one statement with the tokens), then
    what is left of it; the calls beyond are refused; the tokens come back as the job's total,
    and concurrent steps (one batch) neither overspend nor lose tokens."""

    def calls(n: int) -> list[dict[str, object]]:
        return [
            {"index": i, "tool": "t", "arguments": {}, "status": "pending", "budgeted": True}
            for i in range(n)
        ]

    async def step(agent: str, n: int, tokens: tuple[int, int]) -> tuple[list[str], int]:
        rows, total = await ledger.record_model_step(
            job_uid=job_uid,
            agent_id=f"{job_uid}/{agent}",
            step=1,
            seq=0,
            messages=[{"role": "assistant", "content": agent}],
            tool_calls=calls(n),
            max_tool_calls=10,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
        return [str(r["status"]) for r in rows], total

    first = await step("a", 4, (100, 10))
    together = await asyncio.gather(step("b", 4, (1, 1)), step("c", 4, (1, 1)))
    last = await step("d", 2, (5, 5))
    again = await step("a", 4, (0, 0))  # a retried step: the rows as stored

    assert first == (["pending"] * 4, 110)
    statuses = sorted(s for rows, _ in together for s in rows)
    assert statuses == ["pending"] * 6 + ["refused"] * 2
    assert sorted(total for _, total in together) == [112, 114]
    assert last == (["refused"] * 2, 124)
    assert again == (["pending"] * 4, 124)
    job = await ledger.get_job(job_uid)
    assert job is not None
    assert (job.tool_calls_reserved, job.tokens_input, job.tokens_output) == (10, 107, 17)
