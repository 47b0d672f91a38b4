"""Fixtures of the engine tests: see ``engine_support`` for the stack they build."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine_support import FAST, Stack, StackFactory
from temporalio.client import Client

from kswarm.devserver import DevServer
from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.llm.replicas import DEFAULT_ROUTER_SETTINGS, RouterSettings
from kswarm.sim import demo_tools
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.tools import ToolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.worker import build_workers, running_workers


@pytest.fixture
def make_stack(temporal: DevServer, tmp_path: Path) -> StackFactory:
    @contextlib.asynccontextmanager
    async def factory(
        *,
        sim: SimConfig | None = None,
        replicas: int = 2,
        ledger_url: str | None = None,
        tools: ToolRegistry | None = None,
        pool_options: dict[str, Any] | None = None,
        router: RouterSettings = DEFAULT_ROUTER_SETTINGS,
        worker: bool = True,
    ) -> AsyncIterator[Stack]:
        config = sim or SimConfig(time_scale=FAST)
        if config.time_scale == 1.0 and sim is None:
            config = replace(config, time_scale=FAST)
        servers = await start_replicas(replicas, config)
        url = ledger_url or f"sqlite:///{tmp_path / f'ledger-{uuid.uuid4().hex[:6]}.db'}"
        ledger = await Ledger.connect(url, migrate=True)
        name = f"p{uuid.uuid4().hex[:8]}"
        pools = PoolRegistry(
            [
                PoolConfig(
                    name=name,
                    model=config.model,
                    replicas=tuple(s.url for s in servers),
                    max_concurrency=256,
                    **(pool_options or {}),
                )
            ]
        )
        llm = LLMClient(router_settings=router)
        client = await Client.connect(temporal.address)
        activities = SwarmActivities(ledger, llm, pools, tools or demo_tools())
        queue = f"q-{uuid.uuid4().hex[:8]}"
        stack = Stack(client, ledger, queue, name, servers, activities)
        try:
            if worker:
                async with running_workers(build_workers(client, activities, task_queue=queue)):
                    yield stack
            else:
                yield stack
        finally:
            await llm.aclose()
            await ledger.close()
            await stop_replicas(servers)

    return factory
