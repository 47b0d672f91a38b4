"""Group commit: many concurrent writers, one transaction per batch.

Tool-call results must be durable before an activity returns (exactly-once), yet a swarm of
100 sub-agents writes them hundreds at a time. ``GroupCommitter`` queues write operations and
runs every operation that arrived meanwhile in one transaction, then resolves each caller's
future. Callers wait for their commit (strict) or enqueue and move on (write-behind, for model
call attempts). A failed batch is retried one operation per transaction, so one bad operation
cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kswarm.errors import LedgerUnavailable

__all__ = ["GroupCommitter", "WriteOp"]

log = logging.getLogger(__name__)
T = TypeVar("T")
WriteOp = Callable[[AsyncConnection], Awaitable[Any]]

DEFAULT_MAX_BATCH = 512


class GroupCommitter:
    def __init__(
        self, engine: AsyncEngine, masked_url: str, *, max_batch: int = DEFAULT_MAX_BATCH
    ) -> None:
        self._engine = engine
        self._url = masked_url
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any] | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._pending_background = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def submit(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``op`` in the next batch and return its result once committed."""
        self._ensure_running()
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._queue.put_nowait((op, fut))
        return await fut

    def submit_nowait(self, op: WriteOp) -> None:
        """Queue ``op`` without waiting (write-behind); :meth:`flush` waits for it."""
        self._ensure_running()
        self._idle.clear()
        self._queue.put_nowait((op, None))

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

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit(batch)
            if self._queue.empty():
                self._idle.set()

    async def _commit(self, batch: list[tuple[WriteOp, asyncio.Future[Any] | None]]) -> None:
        try:
            results: list[Any] = []
            async with self._engine.begin() as conn:
                for op, _ in batch:
                    results.append(await op(conn))
        except Exception:  # noqa: BLE001 - isolate the failing operation below
            if len(batch) == 1:
                await self._commit_one(batch[0])
                return
            for item in batch:
                await self._commit_one(item)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if fut is not None and not fut.done():
                fut.set_result(result)

    async def _commit_one(self, item: tuple[WriteOp, asyncio.Future[Any] | None]) -> None:
        op, fut = item
        try:
            async with self._engine.begin() as conn:
                result = await op(conn)
        except (OperationalError, DBAPIError, OSError) as e:
            err: Exception = e
            if isinstance(e, OperationalError) or getattr(e, "connection_invalidated", False):
                err = LedgerUnavailable(self._url, _short(e))
            if fut is not None and not fut.done():
                fut.set_exception(err)
            else:
                log.warning("ledger write-behind failed: %s", _short(e))
            return
        except Exception as e:  # noqa: BLE001 - handed to the caller
            if fut is not None and not fut.done():
                fut.set_exception(e)
            else:
                log.warning("ledger write-behind failed: %s", e)
            return
        if fut is not None and not fut.done():
            fut.set_result(result)


def _short(e: BaseException) -> str:
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip().splitlines()
    return text[0] if text else type(e).__name__
