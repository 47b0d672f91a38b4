"""PostgreSQL statements for the tool-call hot path, each one round trip for a whole batch.

The tool-call write path (``tool_calls``) sends a batch of 100 begins or finishes as one
statement that takes arrays; its SQL text never depends on the batch size, so psycopg parses
and prepares it once per connection. :func:`execute` runs these statements on the psycopg
connection under the SQLAlchemy connection, inside the same transaction: SQLAlchemy's
execution path costs about 0.35 ms of CPU per statement on top of psycopg's 0.2 ms, and under
CPU contention several times that in wall time (measured on 2 cores), which is most of a
small batch. Errors are psycopg's own (``psycopg.OperationalError`` and so on).

``BEGIN_AT_ONCE`` does the common begin in one statement, for the items of one job that share
one budget: it locks the keys that exist, counts stored results as deduplicated, reopens the
open ones as their next attempt, and, when the job has room for all the new keys, inserts them
and reserves budget for those inserted. When the budget does not fit all of them, it inserts
none of them and says so (no ``room`` row); the caller then reserves them one by one.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["BEGIN_AT_ONCE", "FINISH", "INSERT_STARTED", "execute"]


async def execute(
    conn: AsyncConnection, sql: str, params: dict[str, Any], *, autocommit: bool = False
) -> list[Any]:
    """Run ``sql`` (psycopg ``%(name)s`` parameters) on ``conn``; its rows.

    By default inside ``conn``'s transaction. With ``autocommit`` (``conn`` must be idle, no
    transaction open) the statement commits on its own: one round trip where a transaction
    costs three (BEGIN, the statement, COMMIT). One statement is atomic by itself.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if not autocommit:
        cursor = await driver.execute(sql, params)
        return list(await cursor.fetchall()) if cursor.description is not None else []
    await driver.set_autocommit(True)
    try:
        cursor = await driver.execute(sql, params)
        return list(await cursor.fetchall()) if cursor.description is not None else []
    finally:
        with contextlib.suppress(Exception):  # a broken connection: keep the first error
            await driver.set_autocommit(False)


# Items travel as one JSON array: one json.dumps in C and one parameter, where an array per
# column costs psycopg a Python-level dump of every element. JSON null arrives as SQL NULL,
# hence the COALESCE: the ledger stores JSON null, as SQLAlchemy's JSON type does.
_INPUT = """
    SELECT * FROM jsonb_to_recordset(CAST(%(items)s AS jsonb))
    AS u(key varchar, job_uid varchar, agent_id varchar, step integer, idx integer,
         call_id varchar, tool varchar, arguments jsonb, started_at timestamptz,
         side_effects boolean, server varchar)
"""

_INSERT_FROM_INPUT = """
    INSERT INTO tool_calls (key, job_uid, agent_id, step, index, call_id, tool, arguments,
                            status, attempts, deduplicated, started_at, side_effects, server)
    SELECT i.key, i.job_uid, i.agent_id, i.step, i.idx, i.call_id, i.tool,
           COALESCE(i.arguments, 'null'::jsonb), 'started', 1, 0, i.started_at, i.side_effects,
           i.server
    FROM input i
"""

INSERT_STARTED = f"""
    WITH input AS ({_INPUT})
    {_INSERT_FROM_INPUT}
    ON CONFLICT (key) DO NOTHING
    RETURNING key
"""
"""Insert new keys as ``started``, attempt 1; returns the keys inserted."""

BEGIN_AT_ONCE = f"""
    WITH input AS ({_INPUT}),
    existing AS (
        SELECT t.key, t.status, t.attempts, t.result, t.error, t.arguments
        FROM tool_calls t
        WHERE t.key IN (SELECT key FROM input)
        ORDER BY t.key
        FOR UPDATE
    ),
    stored AS (
        UPDATE tool_calls t SET deduplicated = t.deduplicated + 1
        FROM existing e
        WHERE t.key = e.key AND e.status IN ('succeeded', 'failed', 'refused')
        RETURNING t.key
    ),
    reopened AS (
        UPDATE tool_calls t SET attempts = t.attempts + 1, status = 'started'
        FROM existing e
        WHERE t.key = e.key AND e.status NOT IN ('succeeded', 'failed', 'refused')
        RETURNING t.key
    ),
    new AS (
        SELECT count(*) AS n FROM input WHERE key NOT IN (SELECT key FROM existing)
    ),
    room AS (
        SELECT jobs.uid FROM jobs, new
        WHERE jobs.uid = %(job)s
          AND (CAST(%(max)s AS integer) IS NULL
               OR jobs.tool_calls_reserved + new.n <= CAST(%(max)s AS integer))
        FOR UPDATE OF jobs
    ),
    inserted AS (
        {_INSERT_FROM_INPUT}
        WHERE i.key NOT IN (SELECT key FROM existing) AND EXISTS (SELECT 1 FROM room)
        ON CONFLICT (key) DO NOTHING
        RETURNING key
    ),
    budget AS (
        UPDATE jobs
        SET tool_calls_reserved = jobs.tool_calls_reserved + (SELECT count(*) FROM inserted)
        WHERE jobs.uid = %(job)s AND CAST(%(max)s AS integer) IS NOT NULL
          AND EXISTS (SELECT 1 FROM inserted)
        RETURNING jobs.uid
    )
    SELECT 'existing' AS kind, key, status, attempts, result, error, arguments FROM existing
    UNION ALL SELECT 'inserted', key, NULL, NULL, NULL, NULL, NULL FROM inserted
    UNION ALL SELECT 'room', uid, NULL, NULL, NULL, NULL, NULL FROM room
"""
"""Begin items of job ``job`` with budget ``max`` (or none) at once, atomically on its own.

Rows: ``existing`` (each known key's state before), ``inserted``, and ``room`` when the job
had room for every new key (then a new key neither existing nor inserted was inserted by
another writer meanwhile). Budget is reserved for the keys actually inserted.
"""

FINISH = """
    UPDATE tool_calls
    SET status = u.status, result = COALESCE(u.result, 'null'::jsonb), error = u.error,
        finished_at = u.finished_at, duration_seconds = u.duration
    FROM jsonb_to_recordset(CAST(%(items)s AS jsonb))
         AS u(key varchar, status varchar, result jsonb, error text, finished_at timestamptz,
              duration double precision)
    WHERE tool_calls.key = u.key AND tool_calls.status IN ('started', 'pending')
"""
"""Store outcomes of distinct keys; a call already finished keeps its outcome."""
