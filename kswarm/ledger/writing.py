"""Group commit: many concurrent writers, one transaction per batch.

Tool-call results must be durable before an activity returns (exactly-once), yet a swarm of
100 sub-agents writes them hundreds at a time. ``GroupCommitter`` queues write operations and
runs every operation that arrived meanwhile in one transaction, then resolves each caller's
future. Callers wait for their commit (strict) or enqueue and move on (write-behind, for model
call attempts).

Two kinds of operation share a batch. A plain operation is a coroutine run on the batch's
connection, in arrival order. A *coalesced* write (:class:`CoalescedWrite`, e.g. beginning or
finishing tool calls) hands all its items of the batch to one ``run`` that does the work in a
few set-based statements: a statement costs about half a millisecond of Python and driver time,
so a batch of 100 tool calls needs a handful of statements, not hundreds. Operations in one batch
are concurrent (no caller saw another's commit), so any serial order of them is correct, and
they need not share one transaction either: plain operations (with the coalesced kinds that
need a transaction) commit together; a kind that ``commits_itself`` (PostgreSQL's tool-call
statements, atomic one statement each) commits on its own in one round trip instead of three
(BEGIN, statement, COMMIT), in its ``order``.

The writer keeps its connection while batches follow each other closely (each checkout pings
the server) and hands it back after ``linger_s`` of quiet.

On SQLite the writer runs each batch in a thread of its own on a synchronous connection: the
operations are the same coroutines, driven to completion there in one go (they only await
``execute``, which answers at once on that connection). With aiosqlite every statement is a
round trip through the event loop, and a busy loop (100 sub-agents' activations) made a batch
of a few dozen statements wait for a few dozen loop turns: commits of half a second in bursts.
On its own thread a batch costs one hand-over, and SQLite releases the GIL while it works.

A batch that fails because the database is unreachable fails every caller at once with
:class:`LedgerUnavailable` (retryable; retrying operation by operation would wait out the
connect timeout once per operation). Any other failure is retried one operation per
transaction, so one bad operation cannot fail its neighbours.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kswarm.errors import LedgerError, LedgerUnavailable

__all__ = [
    "CoalescedWrite",
    "GroupCommitter",
    "WriteOp",
    "run_to_completion",
    "sync_connection",
    "translate",
    "unreachable",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
WriteOp = Callable[[AsyncConnection], Awaitable[Any]]

DEFAULT_MAX_BATCH = 512
DEFAULT_LINGER_S = 0.05


class CoalescedWrite(abc.ABC, Generic[ItemT, ResultT]):
    """A kind of write whose items in one batch run together, in a few statements.

    ``run`` must give the same results as running the items one after another, in some order.
    """

    order: int = 0
    """Kinds run in ascending ``order`` after the plain operations of the batch."""

    commits_itself: bool = False
    """Whether :meth:`run_committed` may run this kind's items outside the batch's transaction."""

    @abc.abstractmethod
    async def run(self, conn: AsyncConnection, items: Sequence[ItemT]) -> Sequence[ResultT]:
        """Apply ``items`` on ``conn`` (inside the batch's transaction); one result per item."""

    async def run_committed(
        self, conn: AsyncConnection, items: Sequence[ItemT]
    ) -> Sequence[ResultT | Exception]:
        """Apply and commit ``items`` on the idle ``conn``, in as few round trips as it can.

        Raises only when nothing was committed. Once part of the work is committed, an error
        comes back in the place of each item it concerns, so that no item runs twice.
        """
        raise NotImplementedError


class _SyncConnection:
    """An ``AsyncConnection`` look-alike over a synchronous one: ``execute`` answers at once."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if parameters is None:
            return self._conn.execute(statement)
        return self._conn.execute(statement, parameters)


def sync_connection(conn: Connection) -> AsyncConnection:
    """``conn`` as the ``AsyncConnection`` that ledger operations take, for
    :func:`run_to_completion` (operations only use its ``execute``)."""
    return cast(AsyncConnection, _SyncConnection(conn))


def run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (it awaits only :func:`sync_connection`), here."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a ledger operation waited on something other than its connection")


@dataclass(slots=True)
class _Pending:
    op: WriteOp | None
    kind: CoalescedWrite[Any, Any] | None
    item: Any
    fut: asyncio.Future[Any] | None


class GroupCommitter:
    def __init__(
        self,
        engine: AsyncEngine,
        masked_url: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
        sync_engine: Engine | None = None,
    ) -> None:
        """``sync_engine`` (SQLite) runs batches on a thread of the writer's own; see above."""
        self._engine = engine
        self._sync_engine = sync_engine
        self._sync_conn: Connection | None = None
        self._thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
            if sync_engine is not None
            else None
        )
        self._url = masked_url
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._conn: AsyncConnection | None = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    def _enqueue(self, pending: _Pending) -> None:
        self._ensure_running()
        self._idle.clear()
        self._queue.put_nowait(pending)

    async def submit(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in the next batch and return its result once committed."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(op, None, None, fut))
        return await fut

    async def submit_item(self, kind: CoalescedWrite[ItemT, ResultT], item: ItemT) -> ResultT:
        """Add ``item`` to the next batch's run of ``kind``; its result once committed."""
        fut: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(None, kind, item, fut))
        return await fut

    def submit_nowait(self, op: WriteOp) -> None:
        """Queue ``op`` without waiting (write-behind); :meth:`flush` waits for it."""
        self._enqueue(_Pending(op, None, None, None))

    def submit_item_nowait(self, kind: CoalescedWrite[ItemT, Any], item: ItemT) -> None:
        """Add ``item`` to the next batch's run of ``kind`` without waiting (write-behind)."""
        self._enqueue(_Pending(None, kind, item, None))

    async def flush(self) -> None:
        if self._task is None:
            return
        await self._idle.wait()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=30)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._release()
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    async def _next(self) -> _Pending:
        """The next operation; the connection goes back to the pool after a short idle."""
        if (self._conn is None and self._sync_conn is None) or not self._queue.empty():
            return await self._queue.get()
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can drop an item that arrives
        # just as the timeout fires; here the same getter is awaited until it delivers.
        getter = asyncio.ensure_future(self._queue.get())
        try:
            done, _ = await asyncio.wait({getter}, timeout=self._linger_s)
            if not done:
                await self._release()
            return await getter
        finally:
            getter.cancel()

    async def _connection(self) -> AsyncConnection:
        """The writer's connection, held while batches follow each other closely.

        Checking a connection out costs a round trip (``pool_pre_ping``); a busy writer keeps
        one. An idle one hands it back, so the next checkout finds out whether the server
        restarted meanwhile.
        """
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = await self._engine.connect()
        return self._conn

    async def _release(self, *, broken: bool = False) -> None:
        """Hand the connection back; a ``broken`` one is discarded, not pooled."""
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._release_sync, broken
            )
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                if broken and not conn.invalidated:
                    await conn.invalidate()
                await conn.close()

    def _release_sync(self, broken: bool) -> None:
        conn, self._sync_conn = self._sync_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                if broken and not conn.invalidated:
                    conn.invalidate()
                conn.close()

    def _apply_sync(self, batch: list[_Pending]) -> list[Any]:
        """On the writer's thread: ``batch`` in one transaction of its connection."""
        assert self._sync_engine is not None
        conn = self._sync_conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._sync_conn = self._sync_engine.connect()
        with conn.begin():
            return run_to_completion(_apply(sync_connection(conn), batch))

    async def _apply_batch(self, batch: list[_Pending]) -> list[Any]:
        """``batch`` applied and committed, on the writer's thread or on the event loop."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._apply_sync, batch)
        conn = await self._connection()
        async with conn.begin():
            return await _apply(conn, batch)

    async def _run(self) -> None:
        while True:
            batch = [await self._next()]
            await asyncio.sleep(0)  # callers woken with this one enqueue too: a fuller batch
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as e:  # a bug in a write: never leave a caller waiting
                log.exception("ledger writer: batch failed unexpectedly")
                _fail(batch, e)
            if self._queue.empty():
                self._idle.set()

    async def _commit(self, batch: list[_Pending]) -> None:
        alone = [p for p in batch if p.kind is not None and p.kind.commits_itself]
        together = [p for p in batch if p.kind is None or not p.kind.commits_itself]
        if together:
            await self._commit_together(together)
        kinds: dict[int, list[_Pending]] = {}
        for p in alone:
            kinds.setdefault(id(p.kind), []).append(p)
        for pendings in sorted(
            kinds.values(), key=lambda ps: ps[0].kind.order if ps[0].kind else 0
        ):
            await self._commit_alone(pendings)

    async def _commit_alone(self, pendings: list[_Pending]) -> None:
        """Items of one self-committing kind; see :meth:`CoalescedWrite.run_committed`."""
        kind = pendings[0].kind
        assert kind is not None
        try:
            conn = await self._connection()
            results = await kind.run_committed(conn, [p.item for p in pendings])
        except Exception as e:  # nothing committed
            await self._release(broken=unreachable(e))
            if unreachable(e) or _schema_missing(e):
                _fail(pendings, self._error_for(e))
                return
            for pending in pendings:
                await self._commit_one(pending)
            return
        if any(isinstance(r, Exception) and unreachable(r) for r in results):
            await self._release(broken=True)
        for pending, result in zip(pendings, results, strict=True):
            if pending.fut is None or pending.fut.done():
                continue
            if isinstance(result, Exception):
                pending.fut.set_exception(self._error_for(result))
            else:
                pending.fut.set_result(result)

    async def _commit_together(self, batch: list[_Pending]) -> None:
        try:
            results = await self._apply_batch(batch)
        except Exception as e:
            await self._release(broken=unreachable(e))
            if unreachable(e) or _schema_missing(e):
                _fail(batch, self._error_for(e), log_behind=True)
                return
            for pending in batch:
                await self._commit_one(pending)
            return
        for pending, result in zip(batch, results, strict=True):
            if pending.fut is not None and not pending.fut.done():
                pending.fut.set_result(result)

    async def _commit_one(self, pending: _Pending) -> None:
        try:
            (result,) = await self._apply_batch([pending])
        except Exception as e:
            await self._release(broken=unreachable(e))
            _fail([pending], self._error_for(e), log_behind=True)
            return
        if pending.fut is not None and not pending.fut.done():
            pending.fut.set_result(result)

    def _error_for(self, e: Exception) -> Exception:
        return translate(self._url, e)


async def _apply(conn: AsyncConnection, batch: Sequence[_Pending]) -> list[Any]:
    """Run a batch on ``conn``: plain operations in order, then each coalesced kind."""
    results: list[Any] = [None] * len(batch)
    kinds: dict[int, tuple[CoalescedWrite[Any, Any], list[int]]] = {}
    for i, pending in enumerate(batch):
        if pending.kind is None:
            assert pending.op is not None
            results[i] = await pending.op(conn)
        else:
            kinds.setdefault(id(pending.kind), (pending.kind, []))[1].append(i)
    for kind, indexes in sorted(kinds.values(), key=lambda entry: entry[0].order):
        out = await kind.run(conn, [batch[i].item for i in indexes])
        for i, result in zip(indexes, out, strict=True):
            results[i] = result
    return results


def _fail(batch: Sequence[_Pending], err: Exception, *, log_behind: bool = False) -> None:
    for pending in batch:
        if pending.fut is not None:
            if not pending.fut.done():
                pending.fut.set_exception(err)
        elif log_behind:
            log.warning("ledger write-behind failed: %s", err)


def translate(masked_url: str, e: Exception) -> Exception:
    """What a caller sees for ``e``: kswarm's errors for a database away or not migrated.

    Other errors (a constraint violated by one write) come back unchanged.
    """
    if _schema_missing(e):
        return LedgerError(
            f"ledger database {masked_url} has no ledger tables ({_short(e)}); "
            "run: kswarm db upgrade"
        )
    if unreachable(e):
        return LedgerUnavailable(masked_url, _short(e))
    return e


def _schema_missing(e: BaseException) -> bool:
    orig = getattr(e, "orig", None) or e
    if getattr(orig, "sqlstate", None) == "42P01":  # PostgreSQL: undefined_table
        return True
    return "no such table" in str(orig)


def unreachable(e: BaseException) -> bool:
    """Whether ``e`` says the database cannot be reached (rather than refusing one write).

    Besides SQLAlchemy's errors, the driver's own: ``pg_statements`` runs on the psycopg
    connection directly, and psycopg raises ``psycopg.OperationalError`` when it is cut off.
    """
    if isinstance(e, OperationalError | OSError | TimeoutError):
        return True
    if isinstance(e, DBAPIError):
        return bool(e.connection_invalidated)
    return any(cls.__name__ == "OperationalError" for cls in type(e).__mro__)


def _short(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip().splitlines()
    return text[0] if text else type(e).__name__
