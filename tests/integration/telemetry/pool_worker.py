"""A model-pool worker in a process of its own: ``model_step`` activities of one pool.

Started by ``telemetry_support.traced_stack(pool_in_subprocess=True)``; tracing comes from the
``OTEL_*`` variables it is given, as in any kswarm process. Prints ``ready`` once polling, and
flushes its spans when terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from temporalio.client import Client
from temporalio.worker import Worker

from kswarm import telemetry
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.sim import demo_tools
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import pool_task_queue


async def serve(ns: argparse.Namespace) -> None:
    telemetry.configure_tracing(service_name="kswarm-pool-worker")
    pool = PoolConfig(
        name=ns.pool, model=ns.model, replicas=tuple(ns.replicas.split(",")), max_concurrency=256
    )
    pools = PoolRegistry([pool])
    ledger = await Ledger.connect(ns.ledger)
    llm = LLMClient()
    client = await Client.connect(ns.address, plugins=telemetry.temporal_plugins(pools=pools))
    activities = SwarmActivities(ledger, llm, pools, demo_tools())
    worker = Worker(
        client,
        task_queue=pool_task_queue(ns.pool),
        activities=[activities.model_step],
        max_concurrent_activities=256,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with worker:
        print("ready", flush=True)
        await stop.wait()
    await llm.aclose()
    await ledger.close()
    telemetry.force_flush()


def main() -> None:
    p = argparse.ArgumentParser()
    for flag in ("--address", "--ledger", "--pool", "--model", "--replicas"):
        p.add_argument(flag, required=True)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
