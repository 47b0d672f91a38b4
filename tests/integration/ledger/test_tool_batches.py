"""A step's short tool calls in one ``run_tools`` activity, on both ledgers.

The activity runs in Temporal's ``ActivityEnvironment`` (the activity as a worker would run it,
without a server: what is under test is the batch's bookkeeping, not Temporal's scheduling).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from temporalio.testing import ActivityEnvironment

from kswarm.errors import ToolError
from kswarm.ledger import Ledger, ToolCallKey
from kswarm.llm.client import LLMClient
from kswarm.llm.pools import PoolRegistry
from kswarm.tools import Tool, ToolContext, ToolRegistry
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.inputs import ToolBatchInput, ToolCallInput

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}


class Rejected(ToolError):
    """A tool error that trying again cannot fix."""

    retryable = False


class Tools:
    """Tools that count their runs: one answers, one fails for good, one fails once."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.keys: list[str] = []
        self.running = 0
        self.most_at_once = 0

    async def ok(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.runs["ok"] += 1
        self.keys.append(ctx.key)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        return {"key": ctx.key}

    async def broken(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.runs["broken"] += 1
        raise Rejected("the backend said no")

    async def flaky(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.runs["flaky"] += 1
        if self.runs["flaky"] == 1:
            raise ToolError("try again")
        return {"attempt": ctx.attempt}

    async def crashing(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.runs["crashing"] += 1
        raise ZeroDivisionError("division by zero")

    def registry(self) -> ToolRegistry:
        reg = ToolRegistry()
        for name in ("ok", "broken", "flaky", "crashing"):
            reg.register(
                Tool(name=name, description=name, parameters=NO_ARGS, fn=getattr(self, name))
            )
        return reg


def batch(job_uid: str, tools: list[str], step: int = 1) -> ToolBatchInput:
    agent = f"{job_uid}/s001-000"
    return ToolBatchInput(
        calls=[ToolCallInput(job_uid, agent, step, i, name) for i, name in enumerate(tools)],
        initial_interval_seconds=0.01,
    )


async def test_calls_run_concurrently_and_a_failing_call_is_its_own_error(
    ledger: Ledger, job_uid: str
) -> None:
    tools = Tools()
    acts = SwarmActivities(ledger, LLMClient(), PoolRegistry(), tools.registry())
    inp = batch(job_uid, ["ok", "ok", "broken", "ok", "crashing", "flaky"])

    out = await ActivityEnvironment().run(acts.run_tools, inp)
    await ledger.flush()

    assert [(r.index, r.status) for r in out.results] == [
        (0, "succeeded"), (1, "succeeded"), (2, "failed"),
        (3, "succeeded"), (4, "failed"), (5, "succeeded"),
    ]  # fmt: skip
    assert tools.most_at_once == 3  # the three ``ok`` calls overlapped
    assert tools.runs == Counter(ok=3, broken=1, flaky=2, crashing=1)
    # Each call has its own key, handed to the tool.
    assert sorted(tools.keys) == sorted(str(ToolCallKey(job_uid, c.agent_id, 1, c.index))
                                        for c in inp.calls if c.tool == "ok")  # fmt: skip
    counters = await ledger.job_counters(job_uid)
    assert (counters.tool_calls_total, counters.tool_calls_failed) == (6, 2)


async def test_a_retried_batch_runs_only_the_calls_without_a_stored_result(
    ledger: Ledger, job_uid: str
) -> None:
    tools = Tools()
    acts = SwarmActivities(ledger, LLMClient(), PoolRegistry(), tools.registry())
    first = batch(job_uid, ["ok", "broken"])
    await ActivityEnvironment().run(acts.run_tools, first)
    # The batch is retried with one more call (as if the first run died after two).
    again = await ActivityEnvironment().run(acts.run_tools, batch(job_uid, ["ok", "broken", "ok"]))
    await ledger.flush()

    assert [(r.index, r.status, r.deduplicated) for r in again.results] == [
        (0, "succeeded", True), (1, "failed", True), (2, "succeeded", False),
    ]  # fmt: skip
    assert tools.runs == Counter(ok=2, broken=1)
    counters = await ledger.job_counters(job_uid)
    assert (counters.tool_calls_total, counters.tool_calls_deduplicated) == (3, 2)
