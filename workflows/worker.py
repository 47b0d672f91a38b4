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
from collections.abc import AsyncIterator, Callable
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm import looping
from kswarm.config import Settings
from kswarm.errors import ConfigError
from kswarm.ledger import Ledger, engines, migrating
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.sim import demo_tools
from kswarm.telemetry import metrics, temporal_plugins
from kswarm.tools import ToolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import TASK_QUEUE
from kswarm.workflows.pool_workers import PoolWorkers, pool_worker
from kswarm.workflows.pools_file import PoolsFile, follow_pools_file
from kswarm.workflows.rollout import RolloutWorkflow
from kswarm.workflows.swarm import SubagentWorkflow, SwarmWorkflow
from kswarm.workflows.tools_file import ServedTools, ToolsFile, follow_tools_file

__all__ = ["build_workers", "job_worker", "main", "running_workers", "serve"]

log = logging.getLogger(__name__)

MAX_LOCAL_ACTIVITIES = 1000


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
        workflows=[SwarmWorkflow, SubagentWorkflow, RolloutWorkflow],
        activities=[
            activities.start_job,
            activities.finish_agent,
            activities.spawn_result,
            activities.finish_job,
            activities.run_tool,
            activities.run_tools,
            activities.await_approval,
            activities.decide_tool_call,
            activities.score_rollout,
        ],
        **settings,
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


class _LivePools:
    """The activities' current registry, for the telemetry plugin (it names a step's model)."""

    def __init__(self, activities: SwarmActivities) -> None:
        self.activities = activities

    def get(self, name: str) -> PoolConfig:
        return self.activities.pools.get(name)


async def _open_ledger(url: str | None) -> Ledger:
    """A SQLite ledger (the laptop's file) is upgraded in place, as ``kswarm run`` does; any
    other database must already be at the newest revision (``kswarm db upgrade`` is a step of
    the deployment), else the worker refuses to start rather than fail every job's writes."""
    url = url or engines.default_url()
    if engines.is_sqlite(url):
        return await Ledger.connect(url, migrate=True)
    await asyncio.to_thread(migrating.require_head, url)
    return await Ledger.connect(url)


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
    ledger = await _open_ledger(settings.database_url)
    llm = LLMClient()
    activities = SwarmActivities(ledger, llm, PoolRegistry(), tools or demo_tools())
    stop = stop or asyncio.Event()
    following: asyncio.Task[None] | None = None
    following_tools: asyncio.Task[None] | None = None
    served: ServedTools | None = None
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
        tools_file = ToolsFile(settings.tools_file) if settings.tools_file else None
        if tools_file is not None:
            # The servers' tools are offered before the first job step is taken.
            served = ServedTools(activities, base=activities.tools)
            await served.apply_file(tools_file)
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
            if served is not None and tools_file is not None:
                following_tools = asyncio.create_task(
                    follow_tools_file(tools_file, served, interval=settings.pools_poll_seconds),
                    name="follow tools file",
                )
            if started is not None:
                started(pool_workers)
            await stop.wait()
    finally:
        for task in (following, following_tools):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if served is not None:
            await served.close()
        if pool_workers is not None:
            await pool_workers.close()
        await llm.aclose()
        await ledger.close()


def main() -> None:
    looping.run(serve(Settings.from_env()))
