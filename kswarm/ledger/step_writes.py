"""Model steps stored set-based: a burst of 100 sub-agents' steps costs a handful of statements.

Every model step of every agent ends in :meth:`Ledger.record_model_step`: its messages, its
tool calls, the job's tool-call budget and tokens, the agent's step count (and, for a final
step, the agent's end). Run one step at a time that is five statements a step, and after each
burst of sub-agent answers the writer ran hundreds of them in a row. The steps of one batch
form a :class:`~kswarm.ledger.writing.CoalescedWrite` kind: one select finds the steps stored
already (a retried activity), one update per job reserves the budget of all its steps and adds
their tokens, and one ``executemany`` each inserts the messages and tool calls and updates the
agents. A job whose budget has no room for all its steps of the batch takes the general path,
step by step in arrival order, which decides which calls are refused exactly as before; so
does a job whose steps carry different budgets. A step that comes again (stored already, or
twice in the batch) gets its calls as first stored. The results are those of running the
steps one after another, in arrival order (``tests/integration/ledger/test_step_writes.py``
compares the two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kswarm.ledger import models, tool_calls
from kswarm.ledger.records import AgentEnd
from kswarm.ledger.writing import CoalescedWrite

__all__ = ["RecordModelSteps", "StepItem", "StepStatements"]

_T = models.Base.metadata.tables
MESSAGES, TOOL_CALLS, AGENTS, JOBS, MODEL_CALLS = (
    _T["messages"],
    _T["tool_calls"],
    _T["agents"],
    _T["jobs"],
    _T["model_calls"],
)
BUDGET_EXHAUSTED = "job budget exhausted: spec.limits.maxToolCalls"

StepResult = tuple[list[dict[str, Any]], int]
"""The step's tool calls as stored (index, tool, status, error) and the job's tokens so far."""


class StepStatements:
    """The statements of a model step, built once: run with parameter lists (executemany),
    their compiled form is reused; built per call they cost more CPU than the database did."""

    def __init__(self, dialect: str) -> None:
        insert = (postgresql if dialect == "postgresql" else sqlite).insert
        tc, jobs = TOOL_CALLS.c, JOBS.c
        self.existing_calls = select(tc.index, tc.tool, tc.status, tc.error).where(
            tc.agent_id == bindparam("agent_id"), tc.step == bindparam("step")
        )
        # The calls of many steps at once: a superset (every pair of the agents and steps),
        # narrowed to the batch's own steps in Python.
        self.existing_calls_of = select(
            tc.agent_id, tc.step, tc.index, tc.tool, tc.status, tc.error
        ).where(
            tc.agent_id.in_(bindparam("agents", expanding=True)),
            tc.step.in_(bindparam("steps", expanding=True)),
        )
        self.reserved = select(jobs.tool_calls_reserved).where(jobs.uid == bindparam("b_uid"))
        self.reserve = tool_calls.BeginToolCalls.reserve  # the same budget as the tool calls'
        self.spend = (
            update(JOBS)
            .where(jobs.uid == bindparam("b_uid"))
            .values(
                tokens_input=jobs.tokens_input + bindparam("input"),
                tokens_output=jobs.tokens_output + bindparam("output"),
            )
            .returning(jobs.tokens_input + jobs.tokens_output)
        )
        # Steps' budget and tokens in one statement, when the budget has room for their calls.
        self.reserve_and_spend = (
            update(JOBS)
            .where(
                jobs.uid == bindparam("b_uid"),
                jobs.tool_calls_reserved + bindparam("n") <= bindparam("m"),
            )
            .values(
                tool_calls_reserved=jobs.tool_calls_reserved + bindparam("n"),
                tokens_input=jobs.tokens_input + bindparam("input"),
                tokens_output=jobs.tokens_output + bindparam("output"),
            )
            .returning(jobs.tokens_input + jobs.tokens_output)
        )
        self.messages = insert(MESSAGES).on_conflict_do_nothing(index_elements=["agent_id", "seq"])
        self.tool_calls = insert(TOOL_CALLS)
        self.agent_steps = (
            update(AGENTS)
            .where(AGENTS.c.id == bindparam("agent_id"))
            .values(steps=bindparam("n_steps"))
        )
        self.agent_end = (
            update(AGENTS)
            .where(AGENTS.c.id == bindparam("agent_id"))
            .values(
                steps=bindparam("n_steps"),
                status=bindparam("end_status"),
                answer=bindparam("end_answer"),
                error=bindparam("end_error"),
                finished_at=bindparam("end_at"),
            )
        )
        self.model_call = insert(MODEL_CALLS).on_conflict_do_nothing(
            index_elements=["agent_id", "step", "attempt"]
        )
        self.conversation = (
            select(MESSAGES.c.content)
            .where(MESSAGES.c.agent_id == bindparam("agent_id"))
            .order_by(MESSAGES.c.seq)
        )
        self.last_message = (
            select(MESSAGES.c.content)
            .where(
                MESSAGES.c.agent_id == bindparam("agent_id"), MESSAGES.c.role == bindparam("role")
            )
            .order_by(MESSAGES.c.seq.desc())
            .limit(1)
        )
        ag = AGENTS.c
        self.agent_outcomes = select(ag.id, ag.name, ag.status, ag.answer).where(
            ag.id.in_(bindparam("ids", expanding=True))
        )
        self.step_calls = (
            select(TOOL_CALLS)
            .where(tc.agent_id == bindparam("agent_id"), tc.step == bindparam("step"))
            .order_by(tc.index)
        )


@dataclass(frozen=True, slots=True)
class StepItem:
    """One model step to store; see :meth:`Ledger.record_model_step`."""

    job_uid: str
    agent_id: str
    step: int
    messages: list[dict[str, Any]]
    """Message rows (``seq`` numbered already)."""
    tool_calls: Sequence[dict[str, Any]]
    max_tool_calls: int | None
    input_tokens: int
    output_tokens: int
    finish: AgentEnd | None
    now: datetime
    want: int = field(init=False)
    """Calls that spend the job's tool-call budget."""

    def __post_init__(self) -> None:
        want = sum(1 for c in self.tool_calls if c.get("budgeted") and c["status"] == "pending")
        object.__setattr__(self, "want", want)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def rows(self, granted: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The step's calls as stored (what it returns) and as inserted, with ``granted`` of
        its budgeted calls allowed; the rest are refused."""
        out: list[dict[str, Any]] = []
        values = []
        for c in self.tool_calls:
            status, error = c["status"], c.get("error")
            if c.get("budgeted") and status == "pending":
                if granted > 0:
                    granted -= 1
                else:
                    status, error = "refused", BUDGET_EXHAUSTED
            done = status != "pending"
            values.append(
                {
                    "key": f"{self.agent_id}/{self.step}/{c['index']}",
                    "job_uid": self.job_uid,
                    "agent_id": self.agent_id,
                    "step": self.step,
                    "index": c["index"],
                    "call_id": c.get("call_id"),
                    "tool": str(c["tool"])[:128],
                    "arguments": c.get("arguments"),
                    "result": c.get("result"),
                    "status": status,
                    "error": error,
                    "attempts": 0,
                    "deduplicated": 0,
                    "started_at": self.now,
                    "finished_at": self.now if done else None,
                    "duration_seconds": 0.0 if done else None,
                    "side_effects": c.get("side_effects"),
                    "server": c.get("server"),
                }
            )
            out.append({"index": c["index"], "tool": c["tool"], "status": status, "error": error})
        return out, values

    def agent_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"agent_id": self.agent_id, "n_steps": self.step}
        if self.finish is not None:
            row |= {"end_status": self.finish.status, "end_answer": self.finish.answer}
            row |= {"end_error": self.finish.error, "end_at": self.now}
        return row


class RecordModelSteps(CoalescedWrite[StepItem, StepResult]):
    """Store the model steps of a batch, set-based where the budget allows (module doc)."""

    order = 1

    def __init__(self, statements: StepStatements) -> None:
        self._st = statements

    async def run(self, conn: AsyncConnection, items: Sequence[StepItem]) -> list[StepResult]:
        st = self._st
        results: list[StepResult | None] = [None] * len(items)
        rows = await conn.execute(
            st.existing_calls_of,
            {
                "agents": sorted({it.agent_id for it in items}),
                "steps": sorted({it.step for it in items}),
            },
        )
        wanted = {(it.agent_id, it.step) for it in items}
        existing: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for agent_id, step, index, tool, status, error in rows:
            if (agent_id, step) in wanted:
                row = {"index": index, "tool": tool, "status": status, "error": error}
                existing.setdefault((agent_id, step), []).append(row)

        jobs: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            jobs.setdefault(it.job_uid, []).append(i)

        one_by_one: list[int] = []
        messages: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = []
        ends: list[dict[str, Any]] = []
        for job_uid, indexes in jobs.items():
            max_calls = {items[i].max_tool_calls for i in indexes}
            if len(max_calls) > 1:  # budgets that disagree: as the budget decides, call by call
                one_by_one += indexes
                continue
            (max_call,) = max_calls
            first: dict[tuple[str, int], int] = {}  # a step's first place in the batch
            for i in indexes:
                first.setdefault((items[i].agent_id, items[i].step), i)
            new = [i for k, i in first.items() if k not in existing]
            want = sum(items[i].want for i in new)
            tokens = {
                "input": sum(items[i].input_tokens for i in indexes),
                "output": sum(items[i].output_tokens for i in indexes),
            }
            if want and max_call is not None:
                params = {"b_uid": job_uid, "n": want, "m": max_call, **tokens}
                found = (await conn.execute(st.reserve_and_spend, params)).first()
                if found is None:  # no room for all: step by step, as the budget decides
                    one_by_one += indexes
                    continue
            else:
                if want:
                    await conn.execute(st.reserve, {"u": job_uid, "n": want})
                found = (await conn.execute(st.spend, {"b_uid": job_uid, **tokens})).first()
            # Each step sees the job's tokens up to and including its own, as one by one (a
            # step that came before sees what it stored); a job that is not there has none.
            so_far = int(found[0]) - tokens["input"] - tokens["output"] if found else 0
            for i in indexes:
                it = items[i]
                so_far += it.tokens if found else 0
                key = (it.agent_id, it.step)
                if key in existing:
                    results[i] = (existing[key], so_far)
                    continue
                if first[key] != i:
                    earlier = results[first[key]]
                    assert earlier is not None
                    results[i] = (earlier[0], so_far)
                    continue
                out, values = it.rows(it.want)
                results[i] = (out, so_far)
                messages += it.messages
                calls += values
                (steps if it.finish is None else ends).append(it.agent_row())
        if messages:
            await conn.execute(st.messages, messages)
        if calls:
            await conn.execute(st.tool_calls, calls)
        if steps:
            await conn.execute(st.agent_steps, steps)
        if ends:
            await conn.execute(st.agent_end, ends)
        for i in sorted(one_by_one):
            results[i] = await self._one(conn, items[i])
        done = [r for r in results if r is not None]
        assert len(done) == len(items), "a model step of the batch was left unstored"
        return done

    async def _one(self, conn: AsyncConnection, it: StepItem) -> StepResult:
        """One step alone: the budget grants what is left of it, call by call."""
        st = self._st
        params = {"agent_id": it.agent_id, "step": it.step}
        existing = (await conn.execute(st.existing_calls, params)).all()
        tokens = {"b_uid": it.job_uid, "input": it.input_tokens, "output": it.output_tokens}
        if existing:
            rows = [{"index": i, "tool": t, "status": s, "error": e} for i, t, s, e in existing]
            return rows, await self._spend(conn, tokens)
        granted = it.want
        spent: int | None = None
        if it.want and it.max_tool_calls is not None:
            params = {"b_uid": it.job_uid, "n": it.want, "m": it.max_tool_calls}
            found = (await conn.execute(st.reserve_and_spend, params | tokens)).first()
            if found is not None:  # room for every call: reserved, and tokens added
                spent = int(found[0])
            else:
                used = (await conn.execute(st.reserved, {"b_uid": it.job_uid})).scalar_one()
                granted = max(0, min(it.want, it.max_tool_calls - int(used)))
        if granted and spent is None:
            await conn.execute(st.reserve, {"u": it.job_uid, "n": granted})
        out, values = it.rows(granted)
        if it.messages:
            await conn.execute(st.messages, it.messages)
        if values:
            await conn.execute(st.tool_calls, values)
        await conn.execute(st.agent_steps if it.finish is None else st.agent_end, it.agent_row())
        return out, spent if spent is not None else await self._spend(conn, tokens)

    async def _spend(self, conn: AsyncConnection, tokens: dict[str, Any]) -> int:
        found = (await conn.execute(self._st.spend, tokens)).first()
        return int(found[0]) if found else 0
