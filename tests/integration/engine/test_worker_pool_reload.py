"""``kswarm worker`` follows its pools file: pools that appear get a worker on their own task
queue, changed ones are updated (or restarted when their limits change), removed ones stop
being polled, and a job running on an unchanged pool never notices.

Real parts only: the Temporal dev server, ``serve`` (the worker process's main), simulated
replicas on loopback, a SQLite ledger, and a pools file replaced the way a ConfigMap volume is
(a new folder, then a symlink swap), so only a worker that reads the content again sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import FAST, example
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kswarm.config import Settings
from kswarm.devserver import DevServer
from kswarm.ledger import Ledger
from kswarm.llm.pools import PoolConfig, pool_entry
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.spec import RetrySpec, parse_manifest
from kswarm.telemetry import temporal_plugins
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.inputs import ModelStepInput, pool_task_queue
from kswarm.workflows.pool_workers import PoolWorkers
from kswarm.workflows.worker import serve

POLL = 0.2
"""The worker's KSWARM_POOLS_POLL_SECONDS in these tests."""


@workflow.defn(sandboxed=False)
class QueueProbe:
    """Schedules one ``model_step`` on a task queue and says what became of it: ``timeout`` when
    no worker picked it up in time, else the error a worker answered with."""

    @workflow.run
    async def run(self, queue: str) -> str:
        probe = ModelStepInput(
            job_uid="probe",
            agent_id="probe",
            role="subagent",
            step=1,
            pool="no-such-pool",  # a worker that takes it fails at once, naming the pool
            model="",
            tools=[],
            max_tool_calls=0,
            max_tokens=None,
            retry=RetrySpec(max_attempts=1),
        )
        try:
            await workflow.execute_activity(
                "model_step",
                probe,
                task_queue=queue,
                schedule_to_start_timeout=timedelta(seconds=2),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as e:
            if isinstance(e.cause, TimeoutError):
                return "timeout"
            if isinstance(e.cause, ApplicationError):
                return f"error:{e.cause.type}"
            raise
        return "completed"


async def stack_probes(probes: Worker) -> None:
    """Run the probe worker in the background (shut down by the test)."""
    asyncio.get_running_loop().create_task(probes.run())


def write_volume(folder: Path, text: str) -> None:
    """Replace ``folder/pools.yaml`` as the kubelet does: new folder, ``..data`` swapped."""
    folder.mkdir(parents=True, exist_ok=True)
    fresh = folder / f"..{uuid.uuid4().hex[:12]}"
    fresh.mkdir()
    (fresh / "pools.yaml").write_text(text)
    data = folder / "..data"
    old = data.resolve() if data.is_symlink() else None
    tmp = folder / "..data_tmp"
    tmp.symlink_to(fresh.name)
    os.replace(tmp, data)
    if not (folder / "pools.yaml").is_symlink():
        (folder / "pools.yaml").symlink_to("..data/pools.yaml")
    if old is not None:
        shutil.rmtree(old)


def document(*pools: PoolConfig) -> str:
    return yaml.safe_dump({"pools": [pool_entry(p) for p in pools]}, sort_keys=False)


async def until(what: str, check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)


def job_on(pool: PoolConfig, namespace: str) -> SwarmJobInput:
    """The quickstart job in ``namespace``, every agent on ``pool``."""
    m = example("quickstart")
    m["metadata"].update(uid=uuid.uuid4().hex[:12], namespace=namespace)
    m["spec"]["orchestrator"] = {"pool": pool.name}
    m["spec"]["subagents"]["pool"] = pool.name
    parsed = parse_manifest(m)
    return SwarmJobInput(name="job", namespace=namespace, uid=parsed.uid, spec=parsed.spec)


@dataclass
class Serving:
    ledger: Ledger
    queue: str
    """The job task queue of the worker."""
    running: asyncio.Future[PoolWorkers]
    """Resolved with the worker's pool workers once it serves."""


@contextlib.asynccontextmanager
async def serving(temporal: DevServer, volume: Path, tmp_path: Path) -> AsyncIterator[Serving]:
    """``kswarm worker`` (``serve``) on the pools file of ``volume``, with a SQLite ledger;
    stopped, and its ledger closed, on exit."""
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = await Ledger.connect(ledger_url, migrate=True)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        temporal_address=temporal.address,
        database_url=ledger_url,
        pools_file=str(volume / "pools.yaml"),
        pools_poll_seconds=POLL,
    )
    stop = asyncio.Event()
    running: asyncio.Future[PoolWorkers] = asyncio.get_running_loop().create_future()
    worker = asyncio.create_task(
        serve(settings, stop=stop, task_queue=queue, started=running.set_result)
    )
    try:
        yield Serving(ledger, queue, running)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        await ledger.close()


@pytest.fixture
async def sims() -> AsyncIterator[dict[str, list[Any]]]:
    """A slow replica (for a job that stays in flight) and two fast ones."""
    slow = await start_replicas(1, SimConfig(time_scale=1.0))
    fast = await start_replicas(2, SimConfig(time_scale=FAST))
    try:
        yield {"slow": slow, "fast": fast}
    finally:
        await stop_replicas([*slow, *fast])


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "pools-volume"


async def test_the_worker_follows_its_pools_file_without_disturbing_unchanged_pools(
    temporal: DevServer, sims: dict[str, list[Any]], volume: Path, tmp_path: Path
) -> None:
    ns = f"team-{uuid.uuid4().hex[:6]}"
    model = SimConfig().model
    a = PoolConfig(name=f"{ns}/a", model=model, replicas=(sims["slow"][0].url,), max_concurrency=64)
    b = PoolConfig(name=f"{ns}/b", model=model, replicas=(sims["fast"][0].url,))
    write_volume(volume, document(a))
    async with serving(temporal, volume, tmp_path) as served:
        ledger, queue, running = served.ledger, served.queue, served.running
        client = await Client.connect(temporal.address, plugins=temporal_plugins(metrics=False))
        probe_queue = f"probe-{uuid.uuid4().hex[:8]}"
        probes = Worker(
            client,
            task_queue=probe_queue,
            workflows=[QueueProbe],
            workflow_runner=UnsandboxedWorkflowRunner(),
        )

        async def probe(pool: PoolConfig) -> str:
            return str(
                await client.execute_workflow(
                    QueueProbe.run,
                    pool_task_queue(pool.name),
                    id=f"probe-{uuid.uuid4().hex[:8]}",
                    task_queue=probe_queue,
                )
            )

        try:
            await stack_probes(probes)
            pools = await asyncio.wait_for(asyncio.shield(running), 30)
            assert pools.task_queues == {a.name: f"kswarm-pool-{ns}/a"}

            # A job on pool A, at a real GPU's pace: in flight through every change below.
            first = job_on(a, ns)
            on_a = await client.start_workflow(
                SwarmWorkflow.run, first, id=first.workflow_id, task_queue=queue
            )

            # B appears: its queue gets a worker, and a job on B runs to the end.
            assert await probe(b) == "timeout"  # nobody polls B's queue yet
            write_volume(volume, document(a, b))
            await until("B's worker", lambda: b.name in pools.task_queues)
            assert pools.task_queues[b.name] == f"kswarm-pool-{ns}/b"
            assert (await on_a.describe()).status == WorkflowExecutionStatus.RUNNING
            second = job_on(b, ns)
            result = await client.execute_workflow(
                SwarmWorkflow.run, second, id=second.workflow_id, task_queue=queue
            )
            assert result.phase == "Succeeded", result.reason
            calls = await ledger.list_model_calls(second.uid)
            assert calls and {(c.pool, c.replica) for c in calls} == {(b.name, b.replicas[0])}

            # B's limits change: a new worker takes over its queue; A's worker is left alone.
            b2 = PoolConfig(name=b.name, model=model, replicas=b.replicas, max_concurrency=4)
            write_volume(volume, document(a, b2))
            await until("B's restart", lambda: pools.started.get(b.name) == 2)
            assert pools.started[a.name] == 1
            assert (await on_a.describe()).status == WorkflowExecutionStatus.RUNNING

            # B's replica moves (same count, same limits): same worker, the next calls go there.
            b3 = PoolConfig(
                name=b.name, model=model, replicas=(sims["fast"][1].url,), max_concurrency=4
            )
            write_volume(volume, document(a, b3))
            await until(
                "B's new replica", lambda: b.name in pools.pools and pools.pools.get(b.name) == b3
            )
            assert pools.started[b.name] == 2
            third = job_on(b, ns)
            result = await client.execute_workflow(
                SwarmWorkflow.run, third, id=third.workflow_id, task_queue=queue
            )
            assert result.phase == "Succeeded", result.reason
            calls = await ledger.list_model_calls(third.uid)
            assert {c.replica for c in calls} == {sims["fast"][1].url}

            # A broken file changes nothing; B's queue is still served.
            write_volume(volume, "pools: [this is not a pool]\n")
            await asyncio.sleep(POLL * 5)
            assert set(pools.task_queues) == {a.name, b.name}

            assert await probe(b) == "error:PoolNotFound"  # polled: B's worker took it
            # B is removed: its queue is no longer polled.
            write_volume(volume, document(a))
            await until("B's worker to stop", lambda: b.name not in pools.task_queues)
            assert await probe(b) == "timeout"
            assert set(pools.task_queues) == {a.name}
            assert pools.started[a.name] == 1

            done = await on_a.result()
            assert done.phase == "Succeeded", done.reason
            calls = await ledger.list_model_calls(first.uid)
            assert calls and {c.status for c in calls} == {"ok"}
            assert {c.attempt for c in calls} == {1}, "a model call of A was retried"
        finally:
            await probes.shutdown()
    assert not pools.task_queues


async def test_a_worker_without_a_pools_file_names_the_variable(temporal: DevServer) -> None:
    from kswarm.errors import ConfigError

    with pytest.raises(ConfigError, match="KSWARM_POOLS_FILE"):
        await serve(Settings(temporal_address=temporal.address))


async def test_a_pool_behind_an_api_key_is_served_once_its_key_file_is_there_and_follows_it(
    temporal: DevServer, volume: Path, tmp_path: Path
) -> None:
    """The operator's Secret and ConfigMap reach a worker as two volumes that the kubelet updates
    independently: the pool's entry may come first, and a rotated key changes only the Secret."""
    ns = f"team-{uuid.uuid4().hex[:6]}"
    (sim,) = await start_replicas(1, SimConfig(time_scale=FAST, api_key="sk-1"))
    key_file = tmp_path / "pool-keys" / f"{ns}.keyed"  # the Secret's mount, empty so far
    pool = PoolConfig(
        name=f"{ns}/keyed", model=sim.config.model, replicas=(sim.url,), api_key_file=str(key_file)
    )
    write_volume(volume, document(pool))
    assert "apiKeyFile" in (volume / "pools.yaml").read_text()
    try:
        async with serving(temporal, volume, tmp_path) as served:
            ledger, queue, running = served.ledger, served.queue, served.running
            client = await Client.connect(temporal.address, plugins=temporal_plugins(metrics=False))

            async def run_job() -> str:
                inp = job_on(pool, ns)
                result = await client.execute_workflow(
                    SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
                )
                assert result.phase == "Succeeded", result.reason
                calls = await ledger.list_model_calls(inp.uid)
                assert calls and {(c.status, c.attempt) for c in calls} == {("ok", 1)}
                return inp.uid

            pools = await asyncio.wait_for(asyncio.shield(running), 30)
            await asyncio.sleep(POLL * 3)
            assert pools.task_queues == {}  # its entry is there, its key is not: not served yet

            key_file.parent.mkdir()
            key_file.write_text("sk-1\n")
            await until("the keyed pool's worker", lambda: pool.name in pools.task_queues)
            await run_job()

            # Rotation: the server's key, then the mounted file; the pools file stays the same.
            sim.reconfigure(api_key="sk-2")
            key_file.write_text("sk-2\n")
            await until(
                "the rotated key", lambda: pools.activities.pools.get(pool.name).api_key == "sk-2"
            )
            assert pools.started[pool.name] == 1  # the same worker, with the new config
            await run_job()
    finally:
        await stop_replicas([sim])
