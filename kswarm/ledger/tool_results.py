"""Finishing tool calls: their outcomes stored durably, a batch of them in one statement.

The other half of exactly-once (see ``tool_calls``): :meth:`Ledger.finish_tool_call` stores a
call's status, result and timing, but only while the call is still open (``started`` or
``pending``), so the first outcome stays. On PostgreSQL a batch is one ``UPDATE ... FROM
jsonb_to_recordset`` that commits on its own (``pg_statements.FINISH``); on SQLite one
``executemany`` inside the batch's transaction. Several finishes of one key in a batch keep the
first, as they would one after another.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kswarm.ledger import models, pg_statements
from kswarm.ledger.writing import CoalescedWrite

__all__ = ["FinishItem", "FinishToolCalls"]

OPEN_STATUSES = ("started", "pending")
TOOL_CALLS = models.Base.metadata.tables["tool_calls"]
TC = TOOL_CALLS.c


@dataclass(frozen=True, slots=True)
class FinishItem:
    key: str
    status: str
    result: Any
    error: str | None
    duration_seconds: float | None
    now: datetime


class FinishToolCalls(CoalescedWrite[FinishItem, None]):
    """Store outcomes; only a call still ``started`` or ``pending`` changes."""

    order = 1  # before begins: a begin in the same batch then sees the stored result

    _many = (
        update(TOOL_CALLS)
        # OR, not IN: an expanding IN cannot go into executemany.
        .where(TC.key == bindparam("k"), or_(*(TC.status == s for s in OPEN_STATUSES)))
        .values(
            status=bindparam("st"),
            result=bindparam("res", type_=models.JSONType),
            error=bindparam("err"),
            finished_at=bindparam("fin"),
            duration_seconds=bindparam("dur"),
        )
    )

    def __init__(self, dialect: str) -> None:
        self._postgres = self.commits_itself = dialect == "postgresql"

    async def run(self, conn: AsyncConnection, items: Sequence[FinishItem]) -> list[None]:
        if not self._postgres:
            params = [
                {
                    "k": it.key,
                    "st": it.status,
                    "res": it.result,
                    "err": it.error,
                    "fin": it.now,
                    "dur": it.duration_seconds,
                }
                for it in items
            ]
            await conn.execute(self._many, params)
            return [None] * len(items)
        await self._finish_pg(conn, items, autocommit=False)
        return [None] * len(items)

    async def run_committed(
        self, conn: AsyncConnection, items: Sequence[FinishItem]
    ) -> list[Exception | None]:
        """PostgreSQL: one statement that commits on its own."""
        await self._finish_pg(conn, items, autocommit=True)
        return [None] * len(items)

    async def _finish_pg(
        self, conn: AsyncConnection, items: Sequence[FinishItem], *, autocommit: bool
    ) -> None:
        # One row per key: the first finish of a key wins, as it would one after another.
        firsts = list({it.key: it for it in reversed(items)}.values())
        rows = [
            {
                "key": it.key,
                "status": it.status,
                "result": it.result,
                "error": it.error,
                "finished_at": it.now.isoformat(),
                "duration": it.duration_seconds,
            }
            for it in firsts
        ]
        await pg_statements.execute(
            conn, pg_statements.FINISH, {"items": json.dumps(rows)}, autocommit=autocommit
        )
