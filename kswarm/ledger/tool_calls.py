"""Beginning tool calls exactly once, set-based: a batch of 100 begins costs a few statements.

:meth:`Ledger.begin_tool_call` is the hottest write of a swarm (100 sub-agents, 1,500 tool
calls), with :meth:`Ledger.finish_tool_call` (``tool_results``). Its items form a
:class:`CoalescedWrite` kind whose results are the same as running the items one after
another. On PostgreSQL the common case is one statement per job (``BEGIN_AT_ONCE`` in
``pg_statements``) that commits on its own; what it leaves (a budget running out, keys raced
in) and SQLite take the general path: lock the known keys, reserve budget per job, insert the
new keys, one statement each.

Across processes the database decides: the known keys and the job rows are locked
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer) and a key inserted by someone else
meanwhile is taken again as an existing key. In one process, ``claims`` keeps a second task
from running a key whose owner is still running it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, any_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from kswarm.errors import LedgerError
from kswarm.ledger import models, pg_statements
from kswarm.ledger.records import ToolCallBegin
from kswarm.ledger.writing import CoalescedWrite, unreachable

__all__ = ["BeginItem", "BeginToolCalls"]

TERMINAL_STATUSES = ("succeeded", "failed", "refused")
# Core tables, not ORM entities: the ORM's per-row bookkeeping is the costly part of a batch.
TOOL_CALLS = models.Base.metadata.tables["tool_calls"]
JOBS = models.Base.metadata.tables["jobs"]
TC, Job = TOOL_CALLS.c, JOBS.c


@dataclass(frozen=True, slots=True)
class BeginItem:
    key: str
    job_uid: str
    agent_id: str
    step: int
    index: int
    tool: str
    arguments: Any
    call_id: str | None
    max_tool_calls: int | None
    now: datetime
    side_effects: bool | None = None
    server: str | None = None


def _among(col: Any, values: list[str], postgres: bool) -> ColumnElement[bool]:
    """``col`` is one of ``values``: an array on PostgreSQL, an expanding IN elsewhere."""
    result: ColumnElement[bool]
    if postgres:
        result = col == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    else:
        result = col.in_(values)
    return result


class BeginToolCalls(CoalescedWrite[BeginItem, ToolCallBegin]):
    """Decide for each item whether its tool runs, as :meth:`Ledger.begin_tool_call` says."""

    order = 2

    reserve = (
        update(JOBS)
        .where(Job.uid == bindparam("u"))
        .values(tool_calls_reserved=Job.tool_calls_reserved + bindparam("n"))
    )
    _reserve_if_room = (
        update(JOBS)
        .where(
            Job.uid == bindparam("u"), Job.tool_calls_reserved + bindparam("n") <= bindparam("m")
        )
        .values(tool_calls_reserved=Job.tool_calls_reserved + bindparam("n"))
        .returning(Job.uid)  # rowcount is not reliable across drivers
    )

    def __init__(self, dialect: str) -> None:
        self._postgres = self.commits_itself = dialect == "postgresql"
        self._sqlite_insert = (
            sqlite.insert(TOOL_CALLS)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(TC.key)
        )

    async def run(self, conn: AsyncConnection, items: Sequence[BeginItem]) -> list[ToolCallBegin]:
        results: list[ToolCallBegin | Exception | None] = [None] * len(items)
        distinct, repeats = _distinct(items)
        if self._postgres:
            distinct = await self._at_once(conn, items, distinct, results, autocommit=False)
        await self._begin(conn, items, distinct, results)
        for i in repeats:
            await self._begin(conn, items, [i], results)
        return [r for r in results if isinstance(r, ToolCallBegin)]

    async def run_committed(
        self, conn: AsyncConnection, items: Sequence[BeginItem]
    ) -> list[ToolCallBegin | Exception]:
        """PostgreSQL: :data:`BEGIN_AT_ONCE` committing on its own, the rest in a transaction.

        Items the statement leaves (a budget running out, keys raced in, a key twice) go on
        in one transaction; if that fails, one transaction each, so an error stays with the
        item that caused it.
        """
        results: list[ToolCallBegin | Exception | None] = [None] * len(items)
        distinct, repeats = _distinct(items)
        try:
            left = await self._at_once(conn, items, distinct, results, autocommit=True)
        except Exception:
            if all(r is None for r in results):
                raise  # nothing committed: the writer decides
            left = [i for i in distinct if results[i] is None]  # the failed group's items
        rest = left + repeats
        if rest:
            try:
                async with conn.begin():
                    await self._begin(conn, items, left, results)
                    for i in repeats:
                        await self._begin(conn, items, [i], results)
            except Exception as e:
                for i in rest:  # rolled back: whatever was decided for them did not happen
                    results[i] = e
                if not unreachable(e):
                    for i in rest:
                        try:
                            async with conn.begin():
                                await self._begin(conn, items, [i], results)
                        except Exception as one:
                            results[i] = one
        return [r if r is not None else LedgerError("tool call not begun") for r in results]

    async def _at_once(
        self,
        conn: AsyncConnection,
        items: Sequence[BeginItem],
        indexes: list[int],
        results: list[ToolCallBegin | Exception | None],
        *,
        autocommit: bool,
    ) -> list[int]:
        """PostgreSQL: one statement per job and budget; the items left for :meth:`_begin`."""
        groups: dict[tuple[str, int | None], list[int]] = {}
        for i in indexes:
            groups.setdefault((items[i].job_uid, items[i].max_tool_calls), []).append(i)
        left: list[int] = []
        for (job, limit), group in groups.items():
            rows = await pg_statements.execute(
                conn,
                pg_statements.BEGIN_AT_ONCE,
                {**_input([items[i] for i in group]), "job": job, "max": limit},
                autocommit=autocommit,
            )
            existing: dict[str, tuple[Any, ...]] = {}
            inserted: set[str] = set()
            for kind, key, *state in rows:
                if kind == "existing":
                    existing[key] = (key, *state)
                elif kind == "inserted":
                    inserted.add(key)
            for i in group:
                key = items[i].key
                if key in existing:
                    results[i] = _from_existing(existing[key])
                elif key in inserted:
                    results[i] = ToolCallBegin(
                        outcome="run", attempt=1, arguments=items[i].arguments
                    )
                else:  # over the budget, or inserted by another process meanwhile
                    left.append(i)
        return left

    async def _begin(
        self,
        conn: AsyncConnection,
        items: Sequence[BeginItem],
        indexes: list[int],
        results: list[ToolCallBegin | Exception | None],
    ) -> None:
        """Begin distinct keys; keys raced in by another process are retried as existing."""
        if not indexes:
            return
        for _ in range(3):
            rows = await self._lock(conn, [items[i].key for i in indexes])
            known = [i for i in indexes if items[i].key in rows]
            await self._existing(conn, items, known, rows, results)
            new = [i for i in indexes if items[i].key not in rows]
            indexes = await self._insert_new(conn, items, new, results)
            if not indexes:
                return
        raise LedgerError(f"tool call {items[indexes[0]].key} keeps changing under this writer")

    async def _lock(self, conn: AsyncConnection, keys: list[str]) -> dict[str, Any]:
        q = (
            select(TC.key, TC.status, TC.attempts, TC.result, TC.error, TC.arguments)
            .where(_among(TC.key, keys, self._postgres))
            .order_by(TC.key)
            .with_for_update()
        )
        return {row[0]: row for row in await conn.execute(q)}

    async def _existing(
        self,
        conn: AsyncConnection,
        items: Sequence[BeginItem],
        indexes: list[int],
        rows: dict[str, Any],
        results: list[ToolCallBegin | Exception | None],
    ) -> None:
        """Stored results come back (deduplicated); open calls run as their next attempt."""
        stored: list[str] = []
        rerun: list[str] = []
        for i in indexes:
            begin = results[i] = _from_existing(rows[items[i].key])
            (stored if begin.outcome == "stored" else rerun).append(items[i].key)
        if stored:
            await conn.execute(
                update(TOOL_CALLS)
                .where(_among(TC.key, stored, self._postgres))
                .values(deduplicated=TC.deduplicated + 1)
            )
        if rerun:
            await conn.execute(
                update(TOOL_CALLS)
                .where(_among(TC.key, rerun, self._postgres))
                .values(attempts=TC.attempts + 1, status="started")
            )

    async def _insert_new(
        self,
        conn: AsyncConnection,
        items: Sequence[BeginItem],
        indexes: list[int],
        results: list[ToolCallBegin | Exception | None],
    ) -> list[int]:
        """Reserve budget and insert new keys; return those someone else inserted first."""
        if not indexes:
            return []
        granted = await self._reserve_budget(conn, [items[i] for i in indexes])
        admitted = []
        for i, ok in zip(indexes, granted, strict=True):
            if ok:
                admitted.append(i)
            else:
                results[i] = ToolCallBegin(outcome="budget_exhausted")
        if not admitted:
            return []
        inserted = await self._insert(conn, [items[i] for i in admitted])
        raced = []
        for i in admitted:
            if items[i].key in inserted:
                results[i] = ToolCallBegin(outcome="run", attempt=1, arguments=items[i].arguments)
            else:
                raced.append(i)
        give_back: dict[str, int] = {}
        for i in raced:
            if items[i].max_tool_calls is not None:
                give_back[items[i].job_uid] = give_back.get(items[i].job_uid, 0) - 1
        for uid, n in give_back.items():
            await conn.execute(self.reserve, {"u": uid, "n": n})
        return raced

    async def _insert(self, conn: AsyncConnection, items: list[BeginItem]) -> set[str]:
        """Insert new keys as ``started``, attempt 1; the keys actually inserted."""
        if self._postgres:
            params = _input(items)
            inserted = await pg_statements.execute(conn, pg_statements.INSERT_STARTED, params)
            return {r[0] for r in inserted}
        rows = [
            {
                "key": it.key,
                "job_uid": it.job_uid,
                "agent_id": it.agent_id,
                "step": it.step,
                "index": it.index,
                "call_id": it.call_id,
                "tool": it.tool,
                "arguments": it.arguments,
                "status": "started",
                "attempts": 1,
                "deduplicated": 0,
                "started_at": it.now,
                "side_effects": it.side_effects,
                "server": it.server,
            }
            for it in items
        ]
        # executemany with RETURNING: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs.
        return {r[0] for r in await conn.execute(self._sqlite_insert, rows)}

    async def _reserve_budget(self, conn: AsyncConnection, items: list[BeginItem]) -> list[bool]:
        """One unit of the job's budget per budgeted item, in order, while the budget lasts."""
        wanted: dict[str, list[int]] = {}
        for pos, it in enumerate(items):
            if it.max_tool_calls is not None:
                wanted.setdefault(it.job_uid, []).append(pos)
        granted = [True] * len(items)
        for uid, positions in sorted(wanted.items()):
            limits = {items[pos].max_tool_calls for pos in positions}
            if len(limits) == 1:  # the common case: room for all of them, one statement
                params = {"u": uid, "n": len(positions), "m": limits.pop()}
                if (await conn.execute(self._reserve_if_room, params)).first() is not None:
                    continue
            each = await self._reserve_each(conn, uid, items, positions)
            for pos, ok in zip(positions, each, strict=True):
                granted[pos] = ok
        return granted

    async def _reserve_each(
        self, conn: AsyncConnection, uid: str, items: list[BeginItem], positions: list[int]
    ) -> list[bool]:
        """Near the end of a budget: item by item, under the job row's lock."""
        q = select(Job.tool_calls_reserved).where(Job.uid == uid).with_for_update()
        found = (await conn.execute(q)).first()
        if found is None:
            return [False] * len(positions)
        reserved = added = int(found[0])
        granted = []
        for pos in positions:
            limit = items[pos].max_tool_calls
            ok = limit is not None and reserved < limit
            reserved += ok
            granted.append(ok)
        if reserved > added:
            await conn.execute(self.reserve, {"u": uid, "n": reserved - added})
        return granted


def _distinct(items: Sequence[BeginItem]) -> tuple[list[int], list[int]]:
    """Indexes of each key's first item, and of the items that repeat a key of the batch."""
    first: dict[str, int] = {}
    repeats: list[int] = []
    for i, it in enumerate(items):
        if it.key in first:
            repeats.append(i)
        else:
            first[it.key] = i
    return list(first.values()), repeats


def _from_existing(row: Sequence[Any]) -> ToolCallBegin:
    """A begin of a key the ledger has: ``(key, status, attempts, result, error, arguments)``."""
    _, status, attempts, result, error, arguments = row
    if status in TERMINAL_STATUSES:
        return ToolCallBegin(outcome="stored", status=status, result=result, error=error)
    return ToolCallBegin(outcome="run", attempt=int(attempts) + 1, arguments=arguments)


def _input(items: Sequence[BeginItem]) -> dict[str, Any]:
    """The ``input`` of :mod:`pg_statements`: the items as one JSON array."""
    rows = [
        {
            "key": it.key,
            "job_uid": it.job_uid,
            "agent_id": it.agent_id,
            "step": it.step,
            "idx": it.index,
            "call_id": it.call_id,
            "tool": it.tool,
            "arguments": it.arguments,
            "started_at": it.now.isoformat(),
            "side_effects": it.side_effects,
            "server": it.server,
        }
        for it in items
    ]
    return {"items": json.dumps(rows)}
