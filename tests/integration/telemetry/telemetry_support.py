"""A traced swarm stack for the telemetry and dashboard tests.

Like the engine tests' stack (``tests/integration/engine/engine_support.py``): a simulated pool
on loopback, a SQLite ledger and workers against the session's Temporal dev server, but the
client connects with kswarm's telemetry plugin, so the job's spans and metrics are real. The
pool's worker can run in another process (:mod:`pool_worker`), to show that one job stays one
trace across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.sim import demo_tools
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.telemetry.interceptors import temporal_plugins
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import pool_task_queue
from kswarm.workflows.worker import build_workers, job_worker, running_workers

HERE = Path(__file__).resolve().parent
ENGINE = HERE.parent / "engine"
if str(ENGINE) not in sys.path:
    sys.path.insert(0, str(ENGINE))

from engine_support import FAST, Stack, example  # noqa: E402

__all__ = ["FAST", "SANDBOX", "Stack", "example", "traced_stack"]

SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("kswarm")
)
"""Temporal's sandbox, which the worker skips by default; the telemetry plugin must work in it."""


@contextlib.asynccontextmanager
async def _pool_worker_process(
    *, address: str, ledger_url: str, pool: PoolConfig, otlp_endpoint: str | None
) -> AsyncIterator[subprocess.Popen[str]]:
    """``pool_worker.py`` in a child process, polling the pool's task queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if otlp_endpoint:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_BSP_SCHEDULE_DELAY="50")
    args = [
        sys.executable,
        str(HERE / "pool_worker.py"),
        "--address",
        address,
        "--ledger",
        ledger_url,
        "--pool",
        pool.name,
        "--model",
        pool.model,
        "--replicas",
        ",".join(pool.replicas),
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
        if line.strip() != "ready":
            raise RuntimeError(f"pool worker did not start: {line!r} (exit {proc.poll()})")
        yield proc
    finally:
        proc.terminate()  # it flushes its spans on SIGTERM
        await asyncio.to_thread(proc.wait, 30)


@contextlib.asynccontextmanager
async def traced_stack(
    address: str,
    tmp_path: Path,
    *,
    ledger_url: str | None = None,
    sim: SimConfig | None = None,
    pool_in_subprocess: bool = False,
    otlp_endpoint: str | None = None,
    max_cached_workflows: int | None = None,
) -> AsyncIterator[Stack]:
    """A stack whose client carries kswarm's telemetry plugin (traces when tracing is on)."""
    config = sim or SimConfig(time_scale=FAST)
    servers = await start_replicas(2, config)
    url = ledger_url or f"sqlite:///{tmp_path / f'ledger-{uuid.uuid4().hex[:6]}.db'}"
    ledger = await Ledger.connect(url, migrate=True)
    name = f"p{uuid.uuid4().hex[:8]}"
    pool = PoolConfig(
        name=name, model=config.model, replicas=tuple(s.url for s in servers), max_concurrency=256
    )
    pools = PoolRegistry([pool])
    llm = LLMClient()
    client = await Client.connect(address, plugins=temporal_plugins(pools=pools))
    activities = SwarmActivities(ledger, llm, pools, demo_tools())
    queue = f"q-{uuid.uuid4().hex[:8]}"
    stack = Stack(client, ledger, queue, name, servers, activities)
    if max_cached_workflows is None:
        workers = build_workers(client, activities, task_queue=queue)
    else:  # as build_workers does, in the sandbox, with the workflow cache bounded
        workers = [
            job_worker(
                client,
                activities,
                task_queue=queue,
                workflow_runner=SANDBOX,
                max_cached_workflows=max_cached_workflows,
            ),
            Worker(client, task_queue=pool_task_queue(name), activities=[activities.model_step]),
        ]
    if pool_in_subprocess:
        workers = [w for w in workers if w.task_queue != pool_task_queue(name)]
    try:
        async with contextlib.AsyncExitStack() as stack_cm:
            if pool_in_subprocess:
                await stack_cm.enter_async_context(
                    _pool_worker_process(
                        address=address, ledger_url=url, pool=pool, otlp_endpoint=otlp_endpoint
                    )
                )
            await stack_cm.enter_async_context(running_workers(workers))
            yield stack
    finally:
        await llm.aclose()
        await ledger.close()
        await stop_replicas(servers)
