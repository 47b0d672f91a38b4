"""Simulated vLLM replicas on loopback, a client, and a port nobody listens on."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from llm_sim_support import StartSim

from kswarm.llm import LLMClient
from kswarm.sim.config import SimConfig, trivial_behaviour
from kswarm.sim.serving import SimReplica, start_replicas, stop_replicas


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """``await start_sim(n, **SimConfig fields)``: replicas at a fast time scale, stopped after."""
    started: list[SimReplica] = []

    async def start(n: int = 1, **config: Any) -> list[SimReplica]:
        fields: dict[str, Any] = {"time_scale": 0.001, "behaviour": trivial_behaviour}
        fields.update(config)
        replicas = await start_replicas(n, SimConfig(**fields))
        started.extend(replicas)
        return replicas

    yield start
    await stop_replicas(started)


@pytest.fixture
async def llm_client() -> AsyncIterator[LLMClient]:
    client = LLMClient()
    yield client
    await client.aclose()


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL whose port refuses connections."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
