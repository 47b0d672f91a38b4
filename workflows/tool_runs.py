"""The tool-call activities: each call exactly once per idempotency key.

A call's row is claimed in the ledger before the tool runs (``begin_tool_call``): a stored
result is returned without running the tool again (deduplicated), and a call whose worker died
runs again with the same key handed to the tool.

Short tools of one agent step run together in one local activity (``run_tools``): the calls
run concurrently, each with its own key, ledger row, span and result; a failing call is that
call's error (recorded, and returned to the model), never the batch's; a retried batch runs
only the calls without a stored result. A long tool runs alone as a regular activity
(``run_tool``), with heartbeats.
"""

from __future__ import annotations

import asyncio
import contextvars
import time

from temporalio import activity

from kswarm.errors import KswarmError, ToolError
from kswarm.ledger import ToolCallKey
from kswarm.telemetry import metrics, tracing
from kswarm.tools import Progress, ToolContext
from kswarm.workflows.inputs import ToolBatchInput, ToolBatchResult, ToolCallInput, ToolCallResult
from kswarm.workflows.resources import ActivityResources, application_error, heartbeating

__all__ = ["ToolActivities"]


def _heartbeats() -> Progress:
    """A long tool's progress (an MCP progress notification) as this activity's heartbeat.

    The MCP session tells progress from a task of its own, outside the activity's context, so
    the heartbeat runs in a copy of the context taken here, inside the activity."""
    context = contextvars.copy_context()

    def beat(progress: float, total: float | None, message: str | None) -> None:
        details = {"progress": progress, "total": total, "message": message}
        context.run(activity.heartbeat, details)

    return beat


class ToolActivities(ActivityResources):
    """``run_tools`` (a step's short calls) and ``run_tool`` (one long call)."""

    @activity.defn(name="run_tools")
    async def run_tools(self, inp: ToolBatchInput) -> ToolBatchResult:
        try:
            results = await asyncio.gather(
                *(
                    self._traced(call, attempts=inp.max_attempts, wait=inp.initial_interval_seconds)
                    for call in inp.calls
                )
            )
        except KswarmError as e:  # the ledger, not a tool: the batch retries, stored calls stay
            raise application_error(e) from e
        return ToolBatchResult(results=list(results))

    @activity.defn(name="run_tool")
    async def run_tool(self, inp: ToolCallInput) -> ToolCallResult:
        try:
            async with heartbeating():  # a long call that reports no progress still lives
                return await self._traced(inp, attempts=1, wait=0.0, retry_activity=True)
        except KswarmError as e:
            raise application_error(e) from e

    async def _traced(
        self, inp: ToolCallInput, *, attempts: int, wait: float, retry_activity: bool = False
    ) -> ToolCallResult:
        """One call in its ``execute_tool`` span, counted by tool and outcome."""
        started = time.perf_counter()
        outcome = "error"
        try:
            with tracing.tool_span(
                job_uid=inp.job_uid,
                agent_id=inp.agent_id,
                step=inp.step,
                index=inp.index,
                tool=inp.tool,
                call_id=f"{inp.agent_id}/{inp.step}/{inp.index}",
            ) as span:
                result = await self._call(
                    inp, attempts=attempts, wait=wait, retry_activity=retry_activity
                )
                outcome = "deduplicated" if result.deduplicated else result.status
                if result.status in ("failed", "refused"):
                    tracing.set_error(span, f"tool_{result.status}")
            return result
        finally:
            metrics.record_tool_call(inp.tool, outcome, time.perf_counter() - started)

    async def _call(
        self, inp: ToolCallInput, *, attempts: int, wait: float, retry_activity: bool
    ) -> ToolCallResult:
        key = ToolCallKey(inp.job_uid, inp.agent_id, inp.step, inp.index)
        tool = self.tools.get(inp.tool)
        begin = await self.ledger.begin_tool_call(
            key,
            tool=inp.tool,
            arguments=None,
            side_effects=tool.side_effects,
            server=tool.server,
        )
        if begin.outcome == "stored":
            return ToolCallResult(index=inp.index, status=begin.status, deduplicated=True)
        if begin.outcome != "run":
            return ToolCallResult(index=inp.index, status="refused")
        started = time.perf_counter()
        attempt = 0
        while True:
            ctx = ToolContext(
                key=str(key),
                job_uid=inp.job_uid,
                agent_id=inp.agent_id,
                attempt=begin.attempt + attempt,
                progress=None if activity.info().is_local else _heartbeats(),
            )
            try:
                result = await tool.fn(dict(begin.arguments or {}), ctx)
                break
            except Exception as e:  # a tool's failure is its call's answer, not the step's
                attempt += 1
                retryable = isinstance(e, ToolError) and e.retryable
                if retryable and retry_activity and activity.info().attempt < 3:
                    raise application_error(e) from e
                if retryable and attempt < attempts:
                    await asyncio.sleep(wait * 2 ** (attempt - 1))
                    continue
                error = str(e) if isinstance(e, ToolError) else f"{type(e).__name__}: {e}"
                await self.ledger.finish_tool_call(
                    key,
                    status="failed",
                    result=getattr(e, "result", None),  # a tool's own error answer, kept whole
                    error=error,
                    duration_seconds=time.perf_counter() - started,
                )
                return ToolCallResult(index=inp.index, status="failed")
        await self.ledger.finish_tool_call(
            key, status="succeeded", result=result, duration_seconds=time.perf_counter() - started
        )
        return ToolCallResult(index=inp.index, status="succeeded")
