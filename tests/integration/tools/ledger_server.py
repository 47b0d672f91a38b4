"""A small MCP server the tests control: it writes every call it receives to a journal file.

Run as ``python -P ledger_server.py JOURNAL [stdio|http PORT]``. Each line of ``JOURNAL`` is a
JSON object: ``{"event": "call", "tool": ..., "key": <the kswarm idempotency key from _meta>}``
when a call starts, ``{"event": "cancelled", ...}`` when a call is cancelled while it runs. The
tests count the lines: what a real server with side effects would see.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

JOURNAL = sys.argv[1]
server = MCPServer("ledger")


def _journal(event: str, tool: str, ctx: Context) -> None:
    meta: Any = ctx.request_context.meta or {}
    line = {"event": event, "tool": tool, "key": dict(meta).get("kswarm.dev/idempotency-key")}
    with open(JOURNAL, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
async def append(text: str, ctx: Context) -> str:
    """Append a line (a side effect)."""
    _journal("call", "append", ctx)
    return f"appended {text!r}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def read(ctx: Context) -> dict[str, int]:
    """Count the lines appended so far (read-only)."""
    _journal("call", "read", ctx)
    with open(JOURNAL, encoding="utf-8") as fh:
        return {"lines": sum(1 for _ in fh)}


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Report progress every 0.1 s for ``seconds``; cancellable."""
    _journal("call", "slow", ctx)
    steps = max(1, round(seconds / 0.1))
    try:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await asyncio.sleep(0.1)
    except BaseException:
        _journal("cancelled", "slow", ctx)
        raise
    return "done"


@server.tool()
async def big(chars: int, ctx: Context) -> str:
    """A text result of ``chars`` characters."""
    _journal("call", "big", ctx)
    return "x" * chars


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Offer one more tool, ``name``: the server's tool list changes while it runs."""
    _journal("call", "grow", ctx)

    async def extra() -> str:
        return name

    server.add_tool(extra, name=name, description="A tool added while the server runs.")
    return f"added {name}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "http":
        server.run("streamable-http", port=int(sys.argv[3]))
    else:
        server.run()
