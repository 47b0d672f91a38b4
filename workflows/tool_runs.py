"""The tool-call activity: one call, exactly once per idempotency key.

A call's row is claimed in the ledger before the tool runs (``begin_tool_call``): a stored
result is returned without running the tool again (deduplicated), and a call whose worker died
runs again with the same key handed to the tool.
"""

from __future__ import annotations

import time

from temporalio import activity

from kswarm.errors import KswarmError, ToolError
from kswarm.ledger import ToolCallKey
from kswarm.tools import ToolContext
from kswarm.workflows.inputs import ToolCallInput, ToolCallResult
from kswarm.workflows.resources import ActivityResources, application_error

__all__ = ["ToolActivities"]


def _heartbeat(progress: float, total: float | None, message: str | None) -> None:
    """A long tool's progress (an MCP progress notification) as the activity's heartbeat."""
    activity.heartbeat({"progress": progress, "total": total, "message": message})


class ToolActivities(ActivityResources):
    """``run_tool``: one tool call of an agent step."""

    @activity.defn(name="run_tool")
    async def run_tool(self, inp: ToolCallInput) -> ToolCallResult:
        key = ToolCallKey(inp.job_uid, inp.agent_id, inp.step, inp.index)
        try:
            tool = self.tools.get(inp.tool)
            begin = await self.ledger.begin_tool_call(key, tool=inp.tool, arguments=None)
        except KswarmError as e:
            raise application_error(e) from e
        if begin.outcome == "stored":
            return ToolCallResult(index=inp.index, status=begin.status, deduplicated=True)
        if begin.outcome != "run":
            return ToolCallResult(index=inp.index, status="refused")
        ctx = ToolContext(
            key=str(key),
            job_uid=inp.job_uid,
            agent_id=inp.agent_id,
            attempt=begin.attempt,
            progress=None if activity.info().is_local else _heartbeat,
        )
        started = time.perf_counter()
        try:
            result = await tool.fn(dict(begin.arguments or {}), ctx)
        except ToolError as e:
            if e.retryable and activity.info().attempt < 3:
                raise application_error(e) from e
            await self.ledger.finish_tool_call(
                key,
                status="failed",
                result=getattr(e, "result", None),
                error=str(e),
                duration_seconds=time.perf_counter() - started,
            )
            return ToolCallResult(index=inp.index, status="failed")
        await self.ledger.finish_tool_call(
            key, status="succeeded", result=result, duration_seconds=time.perf_counter() - started
        )
        return ToolCallResult(index=inp.index, status="succeeded")
