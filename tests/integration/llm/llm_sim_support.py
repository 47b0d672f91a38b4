"""Shared values of the LLM integration tests (imported by name: this folder is no package)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from kswarm.llm import PoolConfig, RetryPolicy
from kswarm.sim.config import Behaviour
from kswarm.sim.serving import SimReplica

StartSim = Callable[..., Awaitable[list[SimReplica]]]

FAST_RETRY = RetryPolicy(max_attempts=5, initial_interval=0.01, maximum_interval=0.05)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the corpus.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def pool_of(*urls: str, **fields: Any) -> PoolConfig:
    return PoolConfig(name="test", model="kswarm-sim", replicas=tuple(urls), **fields)


def talkative(tokens: int) -> Behaviour:
    """A behaviour that answers ``ok`` but is charged ``tokens`` output tokens."""

    def behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        return {"role": "assistant", "content": "ok", "kswarm_output_tokens": tokens}

    return behaviour


async def until(condition: Callable[[], bool], *, within: float = 3.0) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail after ``within`` seconds."""
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not reached within {within} s")
