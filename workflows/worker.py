"""The Temporal worker: workflows and ledger/tool activities on ``kswarm``, model calls on each
pool's own task queue.

A pool's queue carries its limits for every worker at once: each worker takes at most
``replicas x maxConcurrency`` model calls of the pool, and the task queue's rate limit
(``rateLimit.requestsPerSecond``) is enforced by the Temporal server across all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm.config import Settings
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolRegistry, load_pools_file
from kswarm.telemetry import metrics, temporal_plugins
from kswarm.tools import ToolRegistry, default_registry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import TASK_QUEUE, pool_task_queue
from kswarm.workflows.swarm import SubagentWorkflow, SwarmWorkflow

__all__ = ["build_workers", "main", "running_workers"]

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


def build_workers(
    client: Client,
    activities: SwarmActivities,
    *,
    task_queue: str = TASK_QUEUE,
    pools: PoolRegistry | None = None,
) -> list[Worker]:
    """One worker for ``task_queue`` and one per pool."""
    pools = pools if pools is not None else activities.pools
    workers = [
        Worker(
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
            workflow_runner=_runner(),
            max_concurrent_local_activities=MAX_LOCAL_ACTIVITIES,
            max_concurrent_activities=200,
            max_concurrent_workflow_tasks=100,
        )
    ]
    for pool in pools:
        workers.append(
            Worker(
                client,
                task_queue=pool_task_queue(pool.name),
                activities=[activities.model_step],
                max_concurrent_activities=max(1, len(pool.replicas) * pool.max_concurrency),
                max_task_queue_activities_per_second=pool.requests_per_second,
            )
        )
    return workers


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


async def serve(
    settings: Settings,
    *,
    pools: PoolRegistry | None = None,
    tools: ToolRegistry | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Connect to Temporal and the ledger and run the workers until ``stop`` is set."""
    if pools is None:
        if not settings.pools_file:
            from kswarm.errors import ConfigError

            raise ConfigError("KSWARM_POOLS_FILE: a worker needs a pools file")
        pools = load_pools_file(settings.pools_file)
    ledger = await Ledger.connect(settings.database_url)
    llm = LLMClient()
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        plugins=temporal_plugins(pools=pools),
    )
    if settings.metrics_port:
        metrics.start_metrics_server(settings.metrics_port, ledger_url=ledger.url)
    activities = SwarmActivities(ledger, llm, pools, tools or default_registry())
    workers = build_workers(client, activities)
    stop = stop or asyncio.Event()
    try:
        async with running_workers(workers):
            log.info("worker running: queues=%s", [w.task_queue for w in workers])
            await stop.wait()
    finally:
        await llm.aclose()
        await ledger.close()


def main() -> None:
    asyncio.run(serve(Settings.from_env()))
