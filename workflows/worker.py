"""The Temporal worker: workflows and ledger/tool activities on ``kswarm``, model calls on each
pool's own task queue.

A pool's queue carries its limits for every worker at once: each worker takes at most
``replicas x maxConcurrency`` model calls of the pool, and the task queue's rate limit
(``rateLimit.requestsPerSecond``) is enforced by the Temporal server across all of them.

``kswarm worker`` follows its pools file (``KSWARM_POOLS_FILE``; on Kubernetes the ConfigMap
the operator writes from the ModelPools): it reads the file's content again every
``KSWARM_POOLS_POLL_SECONDS`` (a ConfigMap volume replaces the file through a symlink swap, so
the content is compared, not inotify events) and :class:`PoolWorkers` starts, changes and stops
pool workers to match, leaving the workers of unchanged pools alone. The API key files that
pools name (``apiKeyFile``; on Kubernetes the Secret ``kswarm-pool-keys``, mounted beside the
ConfigMap) are read at the same pace, so a rotated key reaches the next model call; see
:class:`PoolsFile` for a key file that is not there yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm import looping
from kswarm.config import Settings
from kswarm.errors import ConfigError
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolConfig, PoolRegistry, parse_pools_text, with_api_key
from kswarm.sim import demo_tools
from kswarm.telemetry import metrics, temporal_plugins
from kswarm.tools import ToolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import TASK_QUEUE, pool_task_queue
from kswarm.workflows.swarm import SubagentWorkflow, SwarmWorkflow

__all__ = [
    "PoolChanges",
    "PoolWorkers",
    "PoolsFile",
    "build_workers",
    "follow_pools_file",
    "job_worker",
    "main",
    "pool_worker",
    "running_workers",
    "serve",
]

log = logging.getLogger(__name__)

MAX_LOCAL_ACTIVITIES = 1000
POOL_DRAIN_SECONDS = 60.0
"""How long a stopped pool worker lets its model calls in flight finish before cancelling them."""


def _runner() -> WorkflowRunner:
    """Workflows run without Temporal's sandbox unless ``KSWARM_WORKFLOW_SANDBOX=1``: on a swarm
    of 100 sub-agents the sandbox costs about a third of the worker's CPU. The workflow code is
    kept deterministic by review and by the replay tests, which run it in the sandbox."""
    if os.environ.get("KSWARM_WORKFLOW_SANDBOX", "0") != "1":
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("kswarm")
    )


def job_worker(
    client: Client, activities: SwarmActivities, *, task_queue: str = TASK_QUEUE, **options: Any
) -> Worker:
    """The worker of the workflows and of the ledger and tool activities; ``options`` (e.g.
    ``workflow_runner``, ``max_cached_workflows``) override :class:`Worker`'s settings."""
    settings: dict[str, Any] = {
        "workflow_runner": _runner(),
        "max_concurrent_local_activities": MAX_LOCAL_ACTIVITIES,
        "max_concurrent_activities": 200,
        "max_concurrent_workflow_tasks": 100,
        **options,
    }
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SwarmWorkflow, SubagentWorkflow],
        activities=[
            activities.start_job,
            activities.finish_agent,
            activities.spawn_result,
            activities.finish_job,
            activities.run_tool,
        ],
        **settings,
    )


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


def build_workers(
    client: Client,
    activities: SwarmActivities,
    *,
    task_queue: str = TASK_QUEUE,
    pools: PoolRegistry | None = None,
) -> list[Worker]:
    """One worker for ``task_queue`` and one per pool."""
    pools = pools if pools is not None else activities.pools
    return [
        job_worker(client, activities, task_queue=task_queue),
        *(pool_worker(client, activities, pool) for pool in pools),
    ]


@contextlib.asynccontextmanager
async def running_workers(workers: list[Worker]) -> AsyncIterator[None]:
    """Run workers in the background; shut them down on exit."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------- changing pools


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


class _LivePools:
    """The activities' current registry, for the telemetry plugin (it names a step's model)."""

    def __init__(self, activities: SwarmActivities) -> None:
        self.activities = activities

    def get(self, name: str) -> PoolConfig:
        return self.activities.pools.get(name)


class PoolsFile:
    """A worker's pools file and the API key files its pools name, read as one.

    :meth:`read` gives the pools to serve whenever something changed since the last read: the
    document's content (compared, not the file's times or inode: a ConfigMap volume swaps a
    symlink to a new directory) or the key in an ``apiKeyFile`` (a rotated key). The kubelet
    updates a mounted Secret and a mounted ConfigMap independently, so a pool's entry may come
    before its key file: such a pool is left out (a pool already served keeps the config it has)
    with one log line naming the pool and the file, and is served from the first read that finds
    the file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.waiting: dict[str, str] = {}
        """Pools left out, or kept as they were, for want of their key file -> why."""
        self._text: bytes | None = None
        self._listed: tuple[PoolConfig, ...] = ()
        """The document's pools, their key files unread."""
        self._served: dict[str, PoolConfig] | None = None
        """What the last read gave, by name; ``None`` before the first read."""

    def read(self) -> list[PoolConfig] | None:
        """The pools to serve now; ``None`` when that has not changed since the last read.

        Raises :class:`OSError` when the document cannot be read and :class:`ConfigError` when
        it is invalid; the last good document's key files are still followed after that.
        """
        with open(self.path, "rb") as f:
            text = f.read()
        if text != self._text:
            self._text = text
            self._listed = tuple(parse_pools_text(text, self.path, read_keys=False))
        elif self._served is not None and not any(p.api_key_file for p in self._listed):
            return None  # same document, no key to read again
        served = self._served or {}
        pools: list[PoolConfig] = []
        waiting: dict[str, str] = {}
        for pool in self._listed:
            try:
                pools.append(with_api_key(pool))
                continue
            except ConfigError as e:
                waiting[pool.name] = str(e)
            old = served.get(pool.name)
            if old is not None:
                pools.append(old)
            if self.waiting.get(pool.name) != waiting[pool.name]:
                what = "keeps its current config" if old is not None else "left out"
                log.warning(
                    "pool %s %s until its API key file can be read: %s",
                    pool.name,
                    what,
                    waiting[pool.name],
                )
        for name in self.waiting.keys() - waiting.keys():
            if any(p.name == name for p in self._listed):
                log.info("pool %s: its API key file can be read now", name)
        self.waiting = waiting
        if self._served is not None and pools == list(self._served.values()):
            return None
        self._served = {p.name: p for p in pools}
        return pools


async def follow_pools_file(
    pools_file: PoolsFile, pool_workers: PoolWorkers, *, interval: float
) -> None:
    """Every ``interval`` seconds, read ``pools_file``; when its pools changed, apply them.

    A missing or invalid file keeps the pools running as they are (and says so once, until the
    file changes again). Runs until cancelled.
    """
    complaint: str | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            pools = await asyncio.to_thread(pools_file.read)
        except OSError as e:
            if complaint != str(e):
                log.warning("pools file unreadable, keeping the current pools: %s", e)
            complaint = str(e)
            continue
        except ConfigError as e:
            if complaint != str(e):
                log.error("pools file invalid, keeping the current pools: %s", e)
            complaint = str(e)
            continue
        if pools is None:
            continue
        try:
            await pool_workers.apply(pools)
        except Exception as e:  # a worker that cannot be built: same, keep what runs
            log.error("pools not applied, keeping the current pools: %s: %s", type(e).__name__, e)
        else:
            complaint = None


async def serve(
    settings: Settings,
    *,
    pools: PoolRegistry | None = None,
    tools: ToolRegistry | None = None,
    stop: asyncio.Event | None = None,
    task_queue: str = TASK_QUEUE,
    started: Callable[[PoolWorkers], None] | None = None,
) -> None:
    """Connect to Temporal and the ledger and run the workers until ``stop`` is set.

    Without ``pools`` the pools come from ``settings.pools_file``, which is followed while the
    worker runs (see :func:`follow_pools_file`). ``started`` is called once the workers run,
    with the object that manages the pool workers.
    """
    pools_file: PoolsFile | None = None
    if pools is None:
        if not settings.pools_file:
            raise ConfigError("KSWARM_POOLS_FILE: a worker needs a pools file")
        pools_file = PoolsFile(settings.pools_file)
        try:
            pools = PoolRegistry(pools_file.read() or ())
        except OSError as e:
            raise ConfigError(f"pool config {settings.pools_file}: {e.strerror}") from e
    ledger = await Ledger.connect(settings.database_url)
    llm = LLMClient()
    activities = SwarmActivities(ledger, llm, PoolRegistry(), tools or demo_tools())
    stop = stop or asyncio.Event()
    following: asyncio.Task[None] | None = None
    pool_workers: PoolWorkers | None = None
    try:
        plugins = temporal_plugins(pools=_LivePools(activities))

        async def connect() -> Client:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace, plugins=plugins
            )

        client = await connect()
        if settings.metrics_port:
            metrics.start_metrics_server(settings.metrics_port, ledger_url=ledger.url)
        pool_workers = PoolWorkers(client, activities, connect=connect)
        async with running_workers([job_worker(client, activities, task_queue=task_queue)]):
            await pool_workers.apply(pools)
            log.info(
                "worker running: queues=%s",
                [task_queue, *pool_workers.task_queues.values()],
            )
            if pools_file is not None:
                following = asyncio.create_task(
                    follow_pools_file(
                        pools_file, pool_workers, interval=settings.pools_poll_seconds
                    ),
                    name="follow pools file",
                )
            if started is not None:
                started(pool_workers)
            await stop.wait()
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        if pool_workers is not None:
            await pool_workers.close()
        await llm.aclose()
        await ledger.close()


def main() -> None:
    looping.run(serve(Settings.from_env()))
