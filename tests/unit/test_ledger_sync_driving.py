"""Driving ledger operations to completion on a synchronous connection (SQLite's threads)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncConnection

from kswarm.ledger.writing import run_to_completion, sync_connection


def test_an_operation_runs_to_completion_on_a_sync_connection() -> None:
    engine = create_engine("sqlite://")

    async def op(conn: AsyncConnection) -> list[int]:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (:x)"), [{"x": 1}, {"x": 2}])
        rows = (await conn.execute(text("SELECT x FROM t ORDER BY x"))).all()
        return [r[0] for r in rows]

    with engine.connect() as conn:
        assert run_to_completion(op(sync_connection(conn))) == [1, 2]


def test_an_operation_that_waits_on_anything_else_is_refused() -> None:
    async def op() -> int:
        await asyncio.sleep(0)
        return 1

    with pytest.raises(RuntimeError, match="waited on something other than its connection"):
        run_to_completion(op())
