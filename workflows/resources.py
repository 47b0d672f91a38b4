"""What every swarm activity is bound to, and the few helpers they share.

An activity runs in one worker process with that process's ledger, model client, pools and
tools; :class:`ActivityResources` holds them, and the activity families (bookkeeping, model
steps, tool runs) are mixins over it, gathered in ``activities.SwarmActivities``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kswarm.ledger import Ledger
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolRegistry
from kswarm.tools import ToolRegistry

__all__ = [
    "HEARTBEAT_SECONDS",
    "ActivityResources",
    "agent_id_for",
    "application_error",
    "heartbeating",
]

HEARTBEAT_SECONDS = 5.0


def agent_id_for(job_uid: str, local: str) -> str:
    return f"{job_uid}/{local}"


def application_error(e: Exception) -> ApplicationError:
    """A kswarm error as Temporal sees it: retried only when the error says it may be."""
    retryable = bool(getattr(e, "retryable", False))
    return ApplicationError(
        f"{type(e).__name__}: {e}", type=type(e).__name__, non_retryable=not retryable
    )


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat every ``HEARTBEAT_SECONDS`` while the body runs."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class ActivityResources:
    """The process's ledger, model client, pools and tools, shared by every activity."""

    def __init__(
        self, ledger: Ledger, client: LLMClient, pools: PoolRegistry, tools: ToolRegistry
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.pools = pools
        """Replaced whole when a worker's pools change (see ``pool_workers``)."""
        self.tools = tools
