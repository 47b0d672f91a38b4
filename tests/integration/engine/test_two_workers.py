"""Two ``kswarm worker`` processes on one Temporal server share one job's work.

Both run sub-agent workflow tasks (and so their tool batches, local activities recorded in the
tasks they complete) and both serve the pool's queue (model calls); the job's result equals a
one-worker run of the same spec, and the ledger shows every tool call once. The split is read
from the ``identity`` Temporal writes on each history event (``PID@host`` of the worker).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_support import example
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from kswarm.devserver import DevServer
from kswarm.ledger import Ledger
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.spec import parse_manifest
from kswarm.workflows import SwarmJobInput, SwarmJobResult, SwarmWorkflow
from kswarm.workflows.inputs import pool_task_queue

REPO = Path(__file__).resolve().parents[3]
KSWARM = str(Path(sys.executable).parent / "kswarm")
QUEUE = "kswarm"
POOL = "shared"


@pytest.fixture
async def pools_file(tmp_path: Path) -> AsyncIterator[Path]:
    sims = await start_replicas(2, SimConfig(time_scale=0.01))
    path = tmp_path / "pools.yaml"
    doc = {
        "pools": [
            {
                "name": POOL,
                "model": SimConfig().model,
                "replicas": [s.url for s in sims],
                "maxConcurrency": 256,
            }
        ]
    }
    path.write_text(yaml.safe_dump(doc))
    try:
        yield path
    finally:
        await stop_replicas(sims)


@contextlib.contextmanager
def workers(n: int, env: dict[str, str], log: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    with log.open("ab") as out:
        procs = [
            subprocess.Popen(
                [KSWARM, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
            for _ in range(n)
        ]
    try:
        yield procs
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


async def wait_polling(client: Client, pids: list[int], log: Path) -> None:
    """Until every worker polls both the job queue and the pool's queue."""
    prefixes = {f"{pid}@" for pid in pids}
    for _ in range(600):
        ready = True
        for queue, kind in (
            (QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            (pool_task_queue(POOL), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        ):
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=queue),
                    task_queue_type=kind,
                )
            )
            seen = {p.identity.split("@")[0] + "@" for p in resp.pollers}
            ready = ready and prefixes <= seen
        if ready:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"workers {pids} never polled both queues: {log.read_text()[-3000:]}")


def job(uid: str) -> SwarmJobInput:
    doc = example("wide-search")
    doc["metadata"]["uid"] = uid
    doc["spec"]["orchestrator"]["pool"] = POOL
    doc["spec"]["subagents"]["pool"] = POOL
    m = parse_manifest(doc)
    return SwarmJobInput(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec)


async def run(
    client: Client, n: int, env: dict[str, str], log: Path, uid: str
) -> tuple[SwarmJobResult, list[int]]:
    inp = job(uid)
    with workers(n, env, log) as procs:
        pids = [p.pid for p in procs]
        await wait_polling(client, pids, log)
        handle = await client.start_workflow(
            SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=QUEUE
        )
        result = await asyncio.wait_for(handle.result(), timeout=400)
    return result, pids


async def split(client: Client, ledger: Ledger, uid: str) -> dict[str, collections.Counter[str]]:
    """Per worker PID: sub-agent workflow tasks completed, tool batches (local-activity markers
    in those tasks) and model calls (pool activities started)."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    agents = [a.id for a in await ledger.list_agents(uid) if a.role == "subagent"]
    for agent in agents:
        history = await client.get_workflow_handle(f"swarmjob-{agent}").fetch_history()
        last = ""
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                last = e.workflow_task_completed_event_attributes.identity.split("@")[0]
                out["workflow_tasks"][last] += 1
            elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                out["tool_batches"][last] += 1
            elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                pid = e.activity_task_started_event_attributes.identity.split("@")[0]
                out["model_calls"][pid] += 1
    return out


def outcome(result: SwarmJobResult, counters: Any) -> dict[str, Any]:
    return {
        "phase": result.phase,
        "criticalSteps": result.critical_steps,
        "totalSteps": result.total_steps,
        "subagents": result.subagents_spawned,
        "toolCalls": counters.tool_calls_total,
        "quality": result.quality,
    }


async def test_two_workers_share_one_job_and_match_one_worker_with_nothing_run_twice(
    temporal: DevServer, postgres_url: str, pools_file: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KSWARM_TEMPORAL_ADDRESS": temporal.address,
        "KSWARM_DATABASE_URL": postgres_url,
        "KSWARM_POOLS_FILE": str(pools_file),
    }
    log = tmp_path / "workers.log"
    ledger = await Ledger.connect(postgres_url, migrate=True)
    client = await Client.connect(temporal.address)
    tag = f"{random.getrandbits(32):08x}"
    try:
        one, _ = await run(client, 1, env, log, f"one-{tag}")
        two, pids = await run(client, 2, env, log, f"two-{tag}")
        await ledger.flush()
        one_counters = await ledger.job_counters(f"one-{tag}")
        two_counters = await ledger.job_counters(f"two-{tag}")
        calls = await ledger.list_tool_calls(f"two-{tag}")
        shares = await split(client, ledger, f"two-{tag}")
    finally:
        await ledger.close()
    assert two.phase == "Succeeded", (two.reason, log.read_text()[-3000:])
    assert outcome(two, two_counters) == outcome(one, one_counters)
    assert two.quality == 1.0
    # Both workers ran sub-agent workflow tasks, tool batches and model calls, and only they did.
    for kind in ("workflow_tasks", "tool_batches", "model_calls"):
        assert set(shares[kind]) == {str(p) for p in pids}, (kind, dict(shares[kind]))
        assert min(shares[kind].values()) >= 1, (kind, dict(shares[kind]))
    # Nothing ran twice: one ledger row per idempotency key, none served from a stored result.
    assert len(calls) == two_counters.tool_calls_total > 1500
    assert len({c.key for c in calls}) == len(calls)
    assert two_counters.tool_calls_deduplicated == 0
    assert {c.status for c in calls} == {"succeeded"}
