"""What kswarm adds to an MCP tool call, against the official ``mcp`` SDK alone on the same server.

Both sides call the same tool of the same kind of server, each over its own session:

* ``kswarm``: the tool as an agent's call runs it: arguments checked against the server's
  schema (:func:`kswarm.tools.validate_arguments`), then :class:`kswarm.tools.mcp.ServerConnection`
  (the concurrency slot, the idempotency key in ``_meta``, progress wiring, the result record);
* ``sdk``: ``mcp.Client.call_tool`` with the same arguments, nothing else.

Two servers: ``mcp-server-time`` over stdio (``get_current_time``), and an echo server built on
the SDK's ``MCPServer`` over streamable HTTP, started by this script in a process of its own.
Calls alternate between the two sides in rounds (ABAB then BABA for throughput), so drift of
the machine hits both alike. Figures
are per call, one call in flight (p50, p99), and calls per second with 16 in flight.

    python -P bench/bench_mcp.py [--calls 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mcp
from mcp.client.stdio import StdioServerParameters

from kswarm.tools import ToolContext, ToolRegistry, validate_arguments
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig

RESULTS = Path(__file__).resolve().parent / "results"
ROUNDS = 10
CONCURRENCY = 16


def serve_http(port: int) -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("echo")

    @server.tool()
    def echo(text: str) -> str:
        """Say it back."""
        return text

    server.run("streamable-http", port=port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"the echo server exited with {proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the echo server did not listen within 15 s")


Call = Callable[[int], Awaitable[Any]]


async def sequential(call: Call, n: int, offset: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        await call(offset + i)
        out.append(time.perf_counter() - start)
    return out


async def concurrent(call: Call, n: int) -> float:
    queue = iter(range(n))

    async def lane() -> None:
        for i in queue:
            await call(i)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - start)


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def measure(
    label: str, config: ToolServerConfig, sdk_server: Any, tool: str, args: dict[str, Any], n: int
) -> dict[str, Any]:
    async with tool_servers([config]) as servers, mcp.Client(sdk_server, cache=None) as sdk:
        registry = servers.register(ToolRegistry())
        kswarm_tool = registry.get(f"{config.name}__{tool}")

        async def via_kswarm(i: int) -> Any:
            ctx = ToolContext(key=f"bench/a/{i}/0", job_uid="bench", agent_id="a", attempt=1)
            return await kswarm_tool.fn(validate_arguments(kswarm_tool, dict(args)), ctx)

        async def via_sdk(i: int) -> Any:
            return await sdk.call_tool(tool, dict(args))

        await sequential(via_kswarm, 20, 0)  # warm both sessions
        await sequential(via_sdk, 20, 0)
        times: dict[str, list[float]] = {"kswarm": [], "sdk": []}
        per_round = max(1, n // ROUNDS)
        for r in range(ROUNDS):
            times["kswarm"] += await sequential(via_kswarm, per_round, r * per_round)
            times["sdk"] += await sequential(via_sdk, per_round, r * per_round)
        rates: dict[str, list[float]] = {"kswarm": [], "sdk": []}
        for side, call in (("kswarm", via_kswarm), ("sdk", via_sdk)) * 2 + (
            ("sdk", via_sdk),
            ("kswarm", via_kswarm),
        ) * 2:
            rates[side].append(await concurrent(call, n // 2))
        rate = {side: statistics.median(r) for side, r in rates.items()}
    k50, s50 = pct(times["kswarm"], 0.5), pct(times["sdk"], 0.5)
    return {
        "server": label,
        "calls": len(times["kswarm"]),
        "kswarm_ms": {"p50": k50, "p99": pct(times["kswarm"], 0.99)},
        "sdk_ms": {"p50": s50, "p99": pct(times["sdk"], 0.99)},
        "added_ms_p50": k50 - s50,
        "ratio_p50": k50 / s50,
        "calls_per_second": rate,
        "ratio_throughput": rate["sdk"] / rate["kswarm"],
        "mean_kswarm_ms": statistics.fmean(times["kswarm"]) * 1000,
        "mean_sdk_ms": statistics.fmean(times["sdk"]) * 1000,
    }


async def run(n: int) -> list[dict[str, Any]]:
    figures = []
    time_cmd = shutil.which("mcp-server-time") or str(
        Path(sys.executable).parent / "mcp-server-time"
    )
    stdio = ToolServerConfig(name="time", command=time_cmd)
    figures.append(
        await measure(
            "mcp-server-time (stdio)",
            stdio,
            StdioServerParameters(command=time_cmd),
            "get_current_time",
            {"timezone": "UTC"},
            n,
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-P", __file__, "--serve-http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        figures.append(
            await measure(
                "echo on MCPServer (streamable HTTP)",
                ToolServerConfig(name="echo", url=url),
                url,
                "echo",
                {"text": "hello"},
                n,
            )
        )
    finally:
        proc.terminate()
        proc.wait(10)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=600, help="calls per side and server")
    parser.add_argument("--serve-http", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve_http:
        serve_http(ns.serve_http)
        return 0
    figures = asyncio.run(run(ns.calls))
    print(f"{'server':38} {'side':7} {'p50 ms':>8} {'p99 ms':>8} {'calls/s @16':>12}")
    for f in figures:
        for side in ("sdk", "kswarm"):
            ms = f[f"{side}_ms"]
            rate = f["calls_per_second"][side]
            print(f"{f['server']:38} {side:7} {ms['p50']:8.3f} {ms['p99']:8.3f} {rate:12.0f}")
        print(
            f"{'':38} added per call (p50): {f['added_ms_p50']:.3f} ms, ratio kswarm/sdk "
            f"{f['ratio_p50']:.3f}x; throughput ratio sdk/kswarm {f['ratio_throughput']:.3f}x"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_mcp.json"
    out.write_text(json.dumps({"calls": ns.calls, "figures": figures}, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
