"""The ledger's API: what workflows, the CLI, the operator and the dashboard read and write.

Every write is idempotent (keys and ``ON CONFLICT DO NOTHING``), so a retried activity can
repeat it safely. Tool calls are exactly-once through :meth:`Ledger.begin_tool_call` and
:meth:`Ledger.finish_tool_call`; model-call attempts are written behind, off the critical path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import case, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from kswarm.errors import LedgerUnavailable
from kswarm.ledger import (
    claims,
    engines,
    models,
    step_writes,
    tool_calls,
    tool_results,
    writing,
)
from kswarm.ledger.records import (
    AgentEnd,
    AgentRecord,
    JobCounters,
    ModelCallRecord,
    StageRecord,
    ToolCallBegin,
    ToolCallKey,
)
from kswarm.ledger.writing import GroupCommitter

__all__ = ["AWAITING_APPROVAL", "Ledger", "utcnow"]

AWAITING_APPROVAL = "awaiting"
"""Status of a tool call that waits for a person to approve or deny it."""

TERMINAL_TOOL_STATUSES = ("succeeded", "failed", "refused")
READER_THREADS = 2
"""SQLite: threads (and connections) for the hot reads; WAL lets them read while one writes."""
AGENTS_PER_SELECT = 500
"""Agents read by one select of :meth:`Ledger.agent_outcomes` (bound parameters stay few)."""
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class _ModelCallRows(writing.CoalescedWrite[dict[str, Any], None]):
    """Model-call attempts written behind: the attempts of a batch in one ``executemany``
    (repeats ignored), not one statement each."""

    order = 3

    def __init__(self, stmt: Any) -> None:
        self._stmt = stmt

    async def run(self, conn: AsyncConnection, items: Sequence[dict[str, Any]]) -> list[None]:
        await conn.execute(self._stmt, list(items))
        return [None] * len(items)


def _message_rows(
    job_uid: str, agent_id: str, start_seq: int, messages: Sequence[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Rows of the messages table for ``messages`` at ``start_seq``, ``start_seq + 1``, ..."""
    return [
        {
            "job_uid": job_uid,
            "agent_id": agent_id,
            "seq": start_seq + i,
            "role": str(m.get("role", "")),
            "content": m,
            "created_at": now,
        }
        for i, m in enumerate(messages)
    ]


class Ledger:
    """Async access to the ledger database. Open with :meth:`connect`; one per process."""

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.masked_url = engines.mask(url)
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite: the writer runs on a thread of its own with a synchronous engine whose
        # transactions take the write lock up front (see ``writing``).
        self._sync_write_engine = (
            engines.create_sqlite_sync_engine(url, pool_size=1, writer=True)
            if self.dialect == "sqlite"
            else None
        )
        self._writer = GroupCommitter(engine, self.masked_url, sync_engine=self._sync_write_engine)
        self._sync_read_engine = (
            engines.create_sqlite_sync_engine(url, pool_size=READER_THREADS)
            if self.dialect == "sqlite"
            else None
        )
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="ledger-reader")
        self._claims = claims.Claims()
        self._begins = tool_calls.BeginToolCalls(self.dialect)
        self._finishes = tool_results.FinishToolCalls(self.dialect)
        self._step = step_writes.StepStatements(self.dialect)
        self._steps = step_writes.RecordModelSteps(self._step)
        self._model_calls = _ModelCallRows(self._step.model_call)

    @classmethod
    async def connect(cls, url: str | None = None, *, migrate: bool = False) -> Ledger:
        """Open the ledger at ``url`` (default: :func:`engines.default_url`).

        ``migrate`` upgrades the schema to the newest revision first. Raises
        :class:`LedgerUnavailable`, naming the URL without its password, when the database
        cannot be reached.
        """
        url = url or engines.default_url()
        if migrate:
            from kswarm.ledger import migrating

            migrating.upgrade(url)
        engine = engines.create_engine_for(url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as e:
            await engine.dispose()
            orig = getattr(e, "orig", None) or e
            raise LedgerUnavailable(engines.mask(url), str(orig).strip().splitlines()[0]) from e
        return cls(url, engine)

    async def close(self) -> None:
        await self._writer.close()
        await self.engine.dispose()
        self._readers.shutdown(wait=True)
        for sync_engine in (self._sync_write_engine, self._sync_read_engine):
            if sync_engine is not None:
                sync_engine.dispose()

    async def flush(self) -> None:
        """Wait until every write-behind record is committed."""
        await self._writer.flush()

    # ------------------------------------------------------------------ helpers

    def _insert(self, table: Any) -> Any:
        mod = postgresql if self.dialect == "postgresql" else sqlite
        return mod.insert(table)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Database errors come out as kswarm's (see :func:`writing.translate`)."""
        try:
            yield
        except (DBAPIError, OSError) as e:
            err = writing.translate(self.masked_url, e)
            if err is e:
                raise
            raise err from e

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection for Core selects (the hot paths, without ORM overhead)."""
        with self._translated():
            async with self.engine.connect() as conn:
                yield conn

    async def _read_with(self, fn: Callable[[AsyncConnection], Coroutine[Any, Any, T]]) -> T:
        """``fn``'s reads, on one connection. On SQLite they run on a reader thread over a
        synchronous connection in one hand-over (see ``writing``), not one event-loop round
        trip per statement; ``fn`` must then await nothing but the connection's ``execute``."""
        engine = self._sync_read_engine
        if engine is None:
            async with self._reading() as conn:
                return await fn(conn)

        def work() -> T:
            with engine.connect() as conn:
                return writing.run_to_completion(fn(writing.sync_connection(conn)))

        with self._translated():
            return await asyncio.get_running_loop().run_in_executor(self._readers, work)

    async def _read_core(self, stmt: Any) -> Sequence[Any]:
        async with self._reading() as conn:
            return (await conn.execute(stmt)).all()

    async def _read(self, stmt: Any) -> Sequence[Any]:
        # A session, not a bare connection: only a session turns select(Model) into Model
        # objects (a connection would hand back the first column of each row).
        with self._translated():
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                return (await session.execute(stmt)).all()

    # ------------------------------------------------------------------ jobs

    async def upsert_job(
        self, *, uid: str, namespace: str, name: str, mode: str, spec: dict[str, Any]
    ) -> bool:
        """Record a job as Running; True when it is new. A second call changes nothing."""
        now = utcnow()
        stmt = (
            self._insert(models.Job)
            .values(
                uid=uid,
                namespace=namespace,
                name=name,
                mode=mode,
                spec=spec,
                phase="Running",
                created_at=now,
                started_at=now,
                tool_calls_reserved=0,
                tokens_input=0,
                tokens_output=0,
            )
            .on_conflict_do_nothing(index_elements=["uid"])
            # RETURNING, not rowcount: psycopg reports -1 for this statement.
            .returning(models.Job.uid)
        )

        async def op(conn: AsyncConnection) -> bool:
            return (await conn.execute(stmt)).first() is not None

        return await self._writer.submit(op)

    async def finish_job(self, uid: str, **fields: Any) -> None:
        """Write a job's outcome: ``phase``, ``reason``, ``result``, counters, ``report``."""
        fields.setdefault("finished_at", utcnow())
        stmt = update(models.Job).where(models.Job.uid == uid).values(**fields)

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def add_tokens(self, uid: str, input_tokens: int, output_tokens: int) -> int:
        """Add a model call's tokens to the job's budget; return the job's total so far."""

        params = {"b_uid": uid, "input": input_tokens, "output": output_tokens}

        async def op(conn: AsyncConnection) -> int:
            row = (await conn.execute(self._step.spend, params)).first()
            return int(row[0]) if row else 0

        return await self._writer.submit(op)

    async def get_job(self, uid: str) -> models.Job | None:
        rows = await self._read(select(models.Job).where(models.Job.uid == uid))
        return rows[0][0] if rows else None

    async def find_job(self, ref: str) -> models.Job | None:
        """A job by uid, by name, or by ``namespace/name``; the newest when names repeat."""
        job = await self.get_job(ref)
        if job is not None:
            return job
        q = select(models.Job).order_by(models.Job.created_at.desc()).limit(1)
        if "/" in ref:
            ns, name = ref.split("/", 1)
            q = q.where(models.Job.namespace == ns, models.Job.name == name)
        else:
            q = q.where(models.Job.name == ref)
        rows = await self._read(q)
        return rows[0][0] if rows else None

    async def list_jobs(
        self, *, namespace: str | None = None, phase: str | None = None, limit: int = 200
    ) -> list[models.Job]:
        q = select(models.Job).order_by(models.Job.created_at.desc()).limit(limit)
        if namespace:
            q = q.where(models.Job.namespace == namespace)
        if phase:
            q = q.where(models.Job.phase == phase)
        return [r[0] for r in await self._read(q)]

    async def list_group_jobs(self, group_uid: str) -> list[models.Job]:
        """The sample jobs of rollout group ``group_uid`` (uids ``GROUP-sI``), by sample."""
        prefix = group_uid.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = select(models.Job).where(models.Job.uid.like(f"{prefix}-s%", escape="\\"))
        jobs = [r[0] for r in await self._read(q)]
        tail = len(group_uid) + 2
        return sorted((j for j in jobs if j.uid[tail:].isdigit()), key=lambda j: int(j.uid[tail:]))

    # ------------------------------------------------------------------ agents and stages

    async def upsert_agents(self, agents: Sequence[AgentRecord]) -> None:
        if not agents:
            return
        now = utcnow()
        rows = [dict(dataclasses.asdict(a), started_at=now, steps=0) for a in agents]
        stmt = self._insert(models.Agent).values(rows).on_conflict_do_nothing(index_elements=["id"])

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def update_agent(self, agent_id: str, **fields: Any) -> None:
        stmt = update(models.Agent).where(models.Agent.id == agent_id).values(**fields)

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def get_agent(self, agent_id: str) -> models.Agent | None:
        rows = await self._read(select(models.Agent).where(models.Agent.id == agent_id))
        return rows[0][0] if rows else None

    async def agent_outcomes(self, agent_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        """``(name, status, answer)`` of each agent of ``agent_ids`` the ledger has (answer ``""``
        when none), read on one connection in a few selects: a spawn's result reads its 100
        children at once, not one session each."""
        stmt = self._step.agent_outcomes
        ids = list(dict.fromkeys(agent_ids))

        async def read(conn: AsyncConnection) -> dict[str, tuple[str, str, str]]:
            found: dict[str, tuple[str, str, str]] = {}
            for start in range(0, len(ids), AGENTS_PER_SELECT):
                chunk = ids[start : start + AGENTS_PER_SELECT]
                for agent_id, name, status, answer in await conn.execute(stmt, {"ids": chunk}):
                    found[agent_id] = (name, status, answer or "")
            return found

        if not ids:
            return {}
        return await self._read_with(read)

    async def list_agents(self, job_uid: str) -> list[models.Agent]:
        q = select(models.Agent).where(models.Agent.job_uid == job_uid).order_by(models.Agent.id)
        return [r[0] for r in await self._read(q)]

    async def record_stage(self, job_uid: str, stage: StageRecord) -> None:
        now = utcnow()
        stmt = (
            self._insert(models.Stage)
            .values(job_uid=job_uid, finished_at=now, **dataclasses.asdict(stage))
            .on_conflict_do_nothing(index_elements=["job_uid", "index"])
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def list_stages(self, job_uid: str) -> list[models.Stage]:
        q = select(models.Stage).where(models.Stage.job_uid == job_uid).order_by(models.Stage.index)
        return [r[0] for r in await self._read(q)]

    # ------------------------------------------------------------------ messages

    async def append_messages(
        self, job_uid: str, agent_id: str, start_seq: int, messages: Sequence[dict[str, Any]]
    ) -> None:
        """Store messages at ``start_seq``, ``start_seq + 1``, ...; repeats are ignored."""
        if not messages:
            return
        rows = _message_rows(job_uid, agent_id, start_seq, messages, utcnow())
        stmt = self._step.messages  # compiled once; a VALUES list per call compiled each time

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt, rows)

        await self._writer.submit(op)

    async def get_conversation(self, agent_id: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """An agent's messages and the tool calls of the step its last message made (rows as
        :meth:`get_tool_calls` gives them; none when the last message is not a model step's),
        read together on one connection: what a model step needs before it calls the model."""
        st = self._step

        async def read(conn: AsyncConnection) -> tuple[list[dict[str, Any]], list[Any]]:
            rows = (await conn.execute(st.conversation, {"agent_id": agent_id})).all()
            messages = [dict(r[0]) for r in rows]
            meta = messages[-1].get("_kswarm") if messages else None
            calls: list[Any] = []
            if isinstance(meta, dict) and "step" in meta and messages[-1].get("tool_calls"):
                params = {"agent_id": agent_id, "step": int(meta["step"])}
                calls = list((await conn.execute(st.step_calls, params)).all())
            return messages, calls

        return await self._read_with(read)

    async def last_message(self, agent_id: str, role: str) -> dict[str, Any] | None:
        """An agent's last message of ``role`` (``None`` when it has none), read alone: what
        an agent's end needs, without decoding its whole conversation."""
        st = self._step

        async def read(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (
                await conn.execute(st.last_message, {"agent_id": agent_id, "role": role})
            ).first()
            return dict(row[0]) if row is not None else None

        return await self._read_with(read)

    async def get_messages(self, agent_id: str) -> list[dict[str, Any]]:
        st = self._step

        async def read(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = (await conn.execute(st.conversation, {"agent_id": agent_id})).all()
            return [dict(r[0]) for r in rows]

        return await self._read_with(read)

    # ------------------------------------------------------------------ model calls

    def record_model_call(self, rec: ModelCallRecord) -> None:
        """Write one model-call attempt behind the caller's back (not on the critical path)."""
        values = dataclasses.asdict(rec)
        values["started_at"] = datetime.fromtimestamp(rec.started_at or 0, UTC)
        self._writer.submit_item_nowait(self._model_calls, values)

    async def list_model_calls(self, job_uid: str) -> list[models.ModelCall]:
        q = (
            select(models.ModelCall)
            .where(models.ModelCall.job_uid == job_uid)
            .order_by(models.ModelCall.id)
        )
        return [r[0] for r in await self._read(q)]

    # ------------------------------------------------------------------ tool calls

    async def begin_tool_call(
        self,
        key: ToolCallKey,
        *,
        tool: str,
        arguments: Any,
        call_id: str | None = None,
        max_tool_calls: int | None = None,
        side_effects: bool | None = None,
        server: str | None = None,
    ) -> ToolCallBegin:
        """Decide whether a tool call runs, atomically.

        A key seen for the first time reserves one unit of the job's tool-call budget. A key
        whose result is stored is never run again: the stored result comes back and the call
        counts as deduplicated. A key that is ``pending`` (written by :meth:`record_model_step`,
        budget already reserved) or ``started`` without a result (its worker died) runs as a
        new attempt; ``arguments`` then come back from the ledger. ``side_effects`` and
        ``server`` (the tool's flag and MCP server) are written with a key seen for the first
        time; a known key keeps what its model step recorded.

        Within this process, a key begun by another task that is still alive is a duplicate
        of a call in flight: this call waits until that task finishes the key (then gets the
        stored result) or ends without finishing it (then runs as the next attempt).
        """
        k = str(key)
        item = tool_calls.BeginItem(
            key=k,
            job_uid=key.job_uid,
            agent_id=key.agent_id,
            step=key.step,
            index=key.index,
            tool=tool,
            arguments=arguments,
            call_id=call_id,
            max_tool_calls=max_tool_calls,
            now=utcnow(),
            side_effects=side_effects,
            server=server,
        )
        claim = await self._claims.acquire(k)
        try:
            begin = await self._writer.submit_item(self._begins, item)
        except BaseException:
            self._claims.release(k, claim)
            raise
        if begin.outcome != "run":
            self._claims.release(k, claim)
        return begin

    async def finish_tool_call(
        self,
        key: ToolCallKey,
        *,
        status: str,
        result: Any = None,
        error: str | None = None,
        duration_seconds: float | None = None,
    ) -> None:
        """Store a tool call's outcome durably; only a call still open is updated.

        An open call is ``started`` or ``pending``; a call already finished keeps its outcome.
        Once committed, tasks of this process waiting on the same key go on (see
        :meth:`begin_tool_call`).
        """
        k = str(key)
        item = tool_results.FinishItem(
            key=k,
            status=status,
            result=result,
            error=error,
            duration_seconds=duration_seconds,
            now=utcnow(),
        )
        await self._writer.submit_item(self._finishes, item)
        self._claims.release(k)

    async def record_model_step(
        self,
        *,
        job_uid: str,
        agent_id: str,
        step: int,
        seq: int,
        messages: Sequence[dict[str, Any]],
        tool_calls: Sequence[dict[str, Any]],
        max_tool_calls: int | None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        finish: AgentEnd | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Store one model step atomically: its messages, its tool calls, their budget and,
        with ``finish``, the agent's end (the step was its last).

        ``tool_calls`` are dicts with ``index``, ``tool``, ``arguments``, ``call_id``,
        ``status`` (``pending`` for calls to run, ``refused``/``succeeded`` for calls decided
        now, with ``error``/``result``), ``budgeted`` (True for calls that spend the job's
        tool-call budget) and, for a registered tool, ``side_effects`` and ``server`` (its MCP
        server, ``None`` for a built-in tool). Budgeted calls beyond the budget are stored as
        ``refused``. Returns the rows as stored and the job's tokens so far, this step's
        ``input_tokens`` and ``output_tokens`` included. Repeating the same step changes nothing
        and returns what is stored.
        """
        now = utcnow()
        rows = _message_rows(job_uid, agent_id, seq, messages, now)
        item = step_writes.StepItem(
            job_uid=job_uid,
            agent_id=agent_id,
            step=step,
            messages=rows,
            tool_calls=tool_calls,
            max_tool_calls=max_tool_calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish=finish,
            now=now,
        )
        return await self._writer.submit_item(self._steps, item)

    async def record_refused_tool_call(
        self, key: ToolCallKey, *, tool: str, arguments: Any, reason: str, call_id: str | None
    ) -> None:
        """Record a call that was refused (unknown tool, not allowed) without running it."""
        now = utcnow()
        stmt = (
            self._insert(models.ToolCall)
            .values(
                key=str(key),
                job_uid=key.job_uid,
                agent_id=key.agent_id,
                step=key.step,
                index=key.index,
                call_id=call_id,
                tool=tool[:128],
                arguments=arguments,
                status="refused",
                error=reason,
                attempts=0,
                deduplicated=0,
                started_at=now,
                finished_at=now,
                duration_seconds=0.0,
            )
            .on_conflict_do_nothing(index_elements=["key"])
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def await_approval(self, keys: Sequence[ToolCallKey]) -> None:
        """Mark pending calls as waiting for a person's decision (status ``awaiting``)."""
        TC = models.ToolCall
        stmt = (
            update(TC)
            .where(TC.key.in_([str(k) for k in keys]), TC.status == "pending")
            .values(status=AWAITING_APPROVAL)
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def decide_tool_call(
        self, key: ToolCallKey, *, approved: bool, by: str, reason: str, at: datetime
    ) -> None:
        """Record a person's decision on a call: approved, it is pending again (and runs);
        denied, it is failed with the decision as its error (the model's answer)."""
        TC = models.ToolCall
        approval = {"approved": approved, "by": by, "at": at.isoformat(), "reason": reason}
        values: dict[str, Any] = {"approval": approval}
        if approved:
            values["status"] = "pending"
        else:
            why = f": {reason}" if reason else ""
            values |= {"status": "failed", "error": f"denied by {by}{why}", "finished_at": at}
        stmt = (
            update(TC)
            .where(TC.key == str(key), TC.status.in_([AWAITING_APPROVAL, "pending"]))
            .values(**values)
        )

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(stmt)

        await self._writer.submit(op)

    async def awaiting_tool_calls(self, job_uid: str) -> list[Any]:
        """The job's calls that wait for a person's decision now (status ``awaiting``), oldest
        first: rows with ``key``, ``tool``, ``agent_id`` and ``started_at``; one indexed read."""
        table = models.ToolCall.__table__
        c = table.c
        q = (
            select(c.key, c.tool, c.agent_id, c.started_at)
            .where(c.job_uid == job_uid, c.status == AWAITING_APPROVAL)
            .order_by(c.id)
        )
        return list(await self._read_core(q))

    async def get_tool_calls(self, agent_id: str, step: int | None = None) -> list[Any]:
        """One agent's tool calls (rows with the ``tool_calls`` columns as attributes)."""
        table = models.ToolCall.__table__
        q = select(table).where(table.c.agent_id == agent_id).order_by(table.c.step, table.c.index)
        if step is not None:
            q = q.where(table.c.step == step)
        return list(await self._read_core(q))

    async def list_tool_calls(self, job_uid: str) -> list[models.ToolCall]:
        TC = models.ToolCall
        q = select(TC).where(TC.job_uid == job_uid).order_by(TC.id)
        return [r[0] for r in await self._read(q)]

    # ------------------------------------------------------------------ counters

    async def job_counters(self, job_uid: str) -> JobCounters:
        TC, MC, Job = models.ToolCall, models.ModelCall, models.Job
        c = JobCounters()
        rows = await self._read(
            select(
                TC.tool,
                func.count(),
                func.sum(case((TC.status == "failed", 1), else_=0)),
                func.sum(case((TC.status == "refused", 1), else_=0)),
                func.sum(TC.deduplicated),
            )
            .where(TC.job_uid == job_uid)
            .group_by(TC.tool)
        )
        for tool, n, failed, refused, dedup in rows:
            c.by_tool[tool] = int(n)
            c.tool_calls_total += int(n)
            c.tool_calls_failed += int(failed or 0)
            c.tool_calls_refused += int(refused or 0)
            c.tool_calls_deduplicated += int(dedup or 0)
        mrows = await self._read(
            select(
                func.sum(case((MC.status == "ok", 1), else_=0)),
                func.sum(case((MC.status != "ok", 1), else_=0)),
            ).where(MC.job_uid == job_uid)
        )
        if mrows:
            c.llm_calls = int(mrows[0][0] or 0)
            c.llm_attempts_failed = int(mrows[0][1] or 0)
        jrows = await self._read(
            select(Job.tokens_input, Job.tokens_output).where(Job.uid == job_uid)
        )
        if jrows:
            c.tokens_input, c.tokens_output = int(jrows[0][0]), int(jrows[0][1])
        return c
