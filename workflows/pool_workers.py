"""The model-call workers of a worker process, one per pool, following pools that change.

Each pool's worker polls the pool's own task queue with the pool's limits (calls in flight,
the queue's rate limit); :class:`PoolWorkers` starts, changes and stops them as the pools change
while the process runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import pool_task_queue

__all__ = ["POOL_DRAIN_SECONDS", "PoolChanges", "PoolWorkers", "pool_limits", "pool_worker"]

log = logging.getLogger(__name__)

POOL_DRAIN_SECONDS = 60.0
"""How long a stopped pool worker lets its model calls in flight finish before cancelling them."""


def pool_limits(pool: PoolConfig) -> tuple[int, float | None]:
    """What a pool's worker is built with: calls in flight, and the queue's rate limit."""
    return max(1, len(pool.replicas) * pool.max_concurrency), pool.requests_per_second


def pool_worker(
    client: Client,
    activities: SwarmActivities,
    pool: PoolConfig,
    *,
    drain_seconds: float = 0.0,
) -> Worker:
    """The worker of ``pool``'s model calls, on the pool's own task queue, with its limits."""
    in_flight, per_second = pool_limits(pool)
    return Worker(
        client,
        task_queue=pool_task_queue(pool.name),
        activities=[activities.model_step],
        max_concurrent_activities=in_flight,
        max_task_queue_activities_per_second=per_second,
        graceful_shutdown_timeout=timedelta(seconds=drain_seconds),
    )


@dataclass(frozen=True)
class PoolChanges:
    """What one :meth:`PoolWorkers.apply` did, by pool name."""

    added: tuple[str, ...] = ()
    """Pools that got a worker."""
    removed: tuple[str, ...] = ()
    """Pools whose worker stopped polling (their calls in flight finish)."""
    restarted: tuple[str, ...] = ()
    """Pools whose limits changed: a new worker took over from the old one."""
    updated: tuple[str, ...] = ()
    """Pools changed otherwise (replica URLs, model, router): same worker, new config."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restarted or self.updated)


@dataclass
class _Running:
    pool: PoolConfig
    worker: Worker
    task: asyncio.Task[None]
    slot: int
    """Which of the two clients the worker was made with (see :class:`PoolWorkers`)."""


Connect = Callable[[], Awaitable[Client]]


class PoolWorkers:
    """The model-call workers of a set of pools that may change while the process runs.

    :meth:`apply` makes the running workers follow a new registry:

    * a new pool gets a worker on its task queue;
    * a removed pool's worker stops polling; its calls in flight get ``drain_seconds`` to end;
    * a pool whose limits changed (``replicas x maxConcurrency``, ``rateLimit``) gets a new
      worker with the new limits, and its old worker stops as a removed one does;
    * any other change (replica URLs, model, router, timeouts) only replaces the pool's config,
      which the next model call uses (the client builds a new router for a changed config);
    * an unchanged pool's worker is left alone, with the calls it is running.

    Temporal allows one worker per task queue per client connection, so with ``connect`` (a
    second connection, opened on first need) the new worker of a restarted pool polls at once
    while the old one drains on the other connection; without it the old one drains first. The
    activities' registry (``activities.pools``) holds the new pools, plus the old config of a
    pool whose worker is still draining, so a call in flight never finds its pool gone.
    """

    def __init__(
        self,
        client: Client,
        activities: SwarmActivities,
        *,
        connect: Connect | None = None,
        drain_seconds: float = POOL_DRAIN_SECONDS,
    ) -> None:
        self.activities = activities
        self.drain_seconds = drain_seconds
        self.started: dict[str, int] = {}
        """Workers started per pool name since this object was made (restarts count)."""
        self._clients: list[Client | None] = [client, None]
        self._connect = connect
        self._running: dict[str, _Running] = {}
        self._draining: dict[asyncio.Task[None], _Running] = {}
        self._lock = asyncio.Lock()

    @property
    def task_queues(self) -> dict[str, str]:
        """Pool name -> the task queue its worker polls, for every pool being served."""
        return {name: r.worker.task_queue for name, r in self._running.items()}

    @property
    def pools(self) -> PoolRegistry:
        return PoolRegistry(r.pool for r in self._running.values())

    async def apply(self, pools: Iterable[PoolConfig]) -> PoolChanges:
        """Serve exactly ``pools`` from now on; what changed."""
        async with self._lock:
            wanted = {p.name: p for p in pools}
            added = [n for n in wanted if n not in self._running]
            removed = [n for n in self._running if n not in wanted]
            restarted, updated = [], []
            for name, pool in wanted.items():
                old = self._running.get(name)
                if old is None or old.pool == pool:
                    continue
                if pool_limits(old.pool) != pool_limits(pool):
                    restarted.append(name)
                else:
                    updated.append(name)
            for name in removed:
                self._retire(self._running.pop(name))
            for name in updated:
                self._running[name].pool = wanted[name]
            for name in (*added, *restarted):
                slot = await self._slot_for(name)
                old = self._running.pop(name, None)
                worker = pool_worker(
                    self._client(slot),
                    self.activities,
                    wanted[name],
                    drain_seconds=self.drain_seconds,
                )
                # The registry has the new config before the new worker can take a call.
                self._running[name] = _Running(wanted[name], worker, self._run(name, worker), slot)
                self.started[name] = self.started.get(name, 0) + 1
                self._publish_registry()
                if old is not None:
                    self._retire(old)
            self._publish_registry()
            changes = PoolChanges(tuple(added), tuple(removed), tuple(restarted), tuple(updated))
        if changes:
            log.info(
                "pools changed added=%s removed=%s restarted=%s updated=%s serving=%s",
                ",".join(changes.added) or "-",
                ",".join(changes.removed) or "-",
                ",".join(changes.restarted) or "-",
                ",".join(changes.updated) or "-",
                ",".join(self._running) or "-",
            )
        return changes

    def _client(self, slot: int) -> Client:
        client = self._clients[slot]
        assert client is not None
        return client

    async def _slot_for(self, name: str) -> int:
        """A client on which ``name`` has no worker, running or draining (waits if need be)."""
        while True:
            busy = {r.slot for r in self._draining.values() if r.pool.name == name}
            if name in self._running:
                busy.add(self._running[name].slot)
            if 0 not in busy:
                return 0
            if 1 not in busy and self._connect is not None:
                if self._clients[1] is None:
                    try:
                        self._clients[1] = await self._connect()
                    except Exception as e:  # no second connection: drain first, then start
                        log.warning("second Temporal connection failed: %s", e)
                        self._connect = None
                        continue
                return 1
            drains = [t for t, r in self._draining.items() if r.pool.name == name]
            if not drains:  # the running worker holds the only client: let it drain first
                self._retire(self._running.pop(name))
                self._publish_registry()
                continue
            await asyncio.wait(drains, return_when=asyncio.FIRST_COMPLETED)

    def _run(self, name: str, worker: Worker) -> asyncio.Task[None]:
        task = asyncio.create_task(worker.run(), name=f"pool worker {name}")
        task.add_done_callback(self._ended)
        return task

    @staticmethod
    def _ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %r", task.get_name(), task.exception())

    def _retire(self, old: _Running) -> None:
        """Stop ``old`` from polling; it drains in the background."""
        drain = asyncio.create_task(self._drain(old), name=f"drain {old.pool.name}")
        self._draining[drain] = old

    async def _drain(self, old: _Running) -> None:
        try:
            await old.worker.shutdown()
            await asyncio.gather(old.task, return_exceptions=True)
        finally:
            self._draining.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._publish_registry()

    def _publish_registry(self) -> None:
        current = {name: r.pool for name, r in self._running.items()}
        for old in self._draining.values():
            current.setdefault(old.pool.name, old.pool)
        self.activities.pools = PoolRegistry(current.values())

    async def close(self) -> None:
        """Stop every pool worker (calls in flight get ``drain_seconds``)."""
        await self.apply(())
        while self._draining:
            await asyncio.gather(*list(self._draining), return_exceptions=True)
