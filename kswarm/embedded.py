"""The embedded stack behind ``kswarm run``: everything a job needs, on one laptop.

It starts the real Temporal dev server on free loopback ports (state under
``KSWARM_HOME/runs/<run>``), the SQLite ledger (``KSWARM_HOME/ledger.db``, upgraded on start,
shared safely by concurrent runs thanks to WAL), a simulated model pool unless a pools file
names real endpoints, and a worker in this process. Two runs side by side share no port and no
file but the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from kswarm.config import kswarm_home
from kswarm.devserver import DevServer, free_ports, start_dev_server, stop_with_parent
from kswarm.errors import ConfigError
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.engines import served_pools
from kswarm.llm.pools import PoolConfig, PoolRegistry, load_pools_file
from kswarm.sim import demo_tools
from kswarm.sim.config import SimConfig
from kswarm.telemetry import temporal_plugins
from kswarm.tools import ToolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.worker import build_workers, running_workers

__all__ = ["EmbeddedStack", "SimOptions", "embedded_stack", "wait_healthy"]

DEFAULT_POOL = "default"
SIM_MODEL = "kswarm-sim"


@dataclass(kw_only=True)
class SimOptions:
    replicas: int = 2
    """Simulated replicas of the default pool."""
    time_scale: float = 1.0
    """Multiplier of every modelled duration; 0.01 runs 100x faster than a real GPU."""
    seed: int = 0
    max_concurrency: int = 256
    """In-flight requests per replica that the pool allows."""
    request_timeout_seconds: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)
    """Further :class:`SimConfig` fields (fault rates, ...)."""


@dataclass
class EmbeddedStack:
    home: Path
    run_dir: Path
    server: DevServer
    client: Client
    ledger: Ledger
    pools: PoolRegistry
    tools: ToolRegistry
    task_queue: str
    sims: list[Any]


def _pool_of(urls: list[str], opts: SimOptions) -> PoolRegistry:
    return PoolRegistry(
        [
            PoolConfig(
                name=DEFAULT_POOL,
                model=SIM_MODEL,
                replicas=tuple(urls),
                max_concurrency=opts.max_concurrency,
                request_timeout_seconds=opts.request_timeout_seconds,
            )
        ]
    )


@contextlib.asynccontextmanager
async def _sim_pool(opts: SimOptions) -> AsyncIterator[tuple[PoolRegistry, list[Any]]]:
    """Simulated replicas: in this process when a behaviour function is given, else in a
    process of their own (``kswarm sim``, where a behaviour named ``MODULE:FUNCTION`` goes),
    so the simulator's work never competes with the worker's."""
    if callable(opts.extra.get("behaviour")):
        from kswarm.sim.serving import start_replicas, stop_replicas

        config = SimConfig(
            model=SIM_MODEL, time_scale=opts.time_scale, seed=opts.seed, **opts.extra
        )
        servers = await start_replicas(opts.replicas, config)
        try:
            yield _pool_of([s.url for s in servers], opts), servers
        finally:
            await stop_replicas(servers)
        return
    port = free_ports(opts.replicas)
    cmd = [
        sys.executable,
        "-P",  # keep the current folder off sys.path: a checkout's operator/ shadows the stdlib
        "-m",
        "kswarm.cli",
        "sim",
        "--port",
        str(port),
        "--replicas",
        str(opts.replicas),
        "--time-scale",
        repr(opts.time_scale),
        "--seed",
        str(opts.seed),
        "--model",
        SIM_MODEL,
    ]
    for key, value in opts.extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        preexec_fn=stop_with_parent,
    )
    urls = [f"http://127.0.0.1:{port + i}" for i in range(opts.replicas)]
    try:
        await wait_healthy(urls, proc)
        yield _pool_of(urls, opts), [proc]
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_healthy(urls: list[str], proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait (15 s at most) until every replica answers ``/health`` with 200; fail at once when
    ``proc``, the process serving them, exits."""
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if proc is not None and proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise ConfigError(f"the simulator exited with {proc.returncode}: {err[-1000:]}")
            try:
                codes = [(await http.get(f"{u}/health")).status_code for u in urls]
                if codes == [200] * len(urls):
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise ConfigError("the simulator did not become healthy within 15 s")


@contextlib.asynccontextmanager
async def embedded_stack(
    *,
    pools_file: str | None = None,
    sim: SimOptions | None = None,
    database_url: str | None = None,
    tools: ToolRegistry | None = None,
    run_worker: bool = True,
) -> AsyncIterator[EmbeddedStack]:
    """Start Temporal, the ledger, the model pool(s) and a worker; stop them on exit."""
    home = kswarm_home()
    run_dir = home / "runs" / uuid.uuid4().hex[:12]
    url = database_url or os.environ.get("KSWARM_DATABASE_URL") or f"sqlite:///{home / 'ledger.db'}"
    ledger = await Ledger.connect(url, migrate=True)
    tools = tools or demo_tools()
    llm = LLMClient()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if pools_file:
                # Pools with ``engine``: their servers start now and stop with the stack.
                served = await stack.enter_async_context(served_pools(pools_file))
                pools, sims = load_pools_file(served), list[Any]()
            else:
                pools, sims = await stack.enter_async_context(_sim_pool(sim or SimOptions()))
            # The routers' background probes stop before the simulator does.
            stack.push_async_callback(llm.aclose)
            server = await stack.enter_async_context(start_dev_server(run_dir))
            client = await Client.connect(server.address, plugins=temporal_plugins(pools=pools))
            task_queue = "kswarm"
            if run_worker:
                activities = SwarmActivities(ledger, llm, pools, tools)
                workers = build_workers(client, activities, task_queue=task_queue)
                await stack.enter_async_context(running_workers(workers))
            yield EmbeddedStack(
                home=home,
                run_dir=run_dir,
                server=server,
                client=client,
                ledger=ledger,
                pools=pools,
                tools=tools,
                task_queue=task_queue,
                sims=sims,
            )
    finally:
        await llm.aclose()
        await ledger.close()
        shutil.rmtree(run_dir, ignore_errors=True)
