"""What the model client itself costs per call, against a simulator that models no time at all.

Every agent step pays the client's own work: building the body, the router's choice, the HTTP
exchange through httpx, parsing and checking the answer, the attempt record. This measures it
against a simulated replica with ``time_scale=0`` (answers at once) running in its own process:

* ``chat()``: one :meth:`LLMClient.chat` call, whole answer and streamed;
* ``raw``: the same request as one bare aiohttp POST, answer parsed with ``json.loads``, the
  least any Python client can spend here;
* ``overhead``: ``chat()`` minus ``raw``, at p50 and p99.

Calls are sequential (one in flight), so the figures are per-call costs, not queueing.

    python bench/bench_client.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from kswarm.embedded import wait_healthy
from kswarm.llm import ChatRequest, LLMClient, PoolConfig, RetryPolicy

RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]


def serve(port: int) -> None:
    from kswarm.sim import serving as simulator
    from kswarm.sim.config import SimConfig, trivial_behaviour

    asyncio.run(simulator.serve(port, SimConfig(time_scale=0, behaviour=trivial_behaviour)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def messages(i: int) -> list[dict[str, Any]]:
    rng = random.Random(i)
    task = " ".join(f"{rng.getrandbits(16):04x}" for _ in range(300))
    return [
        {"role": "system", "content": "You research companies. " * 40},
        {"role": "user", "content": f"Task {i}: {task}"},
    ]


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


async def measure(url: str, calls: int) -> dict[str, Any]:
    pool = PoolConfig(name="bench", model="kswarm-sim", replicas=(url,))
    retry = RetryPolicy(max_attempts=1)
    client = LLMClient()
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        await wait_healthy([url])
        for stream in (False, True):
            raw, wrapped = [], []
            for i in range(calls + 50):  # the first 50 warm up, and are not counted
                request = ChatRequest(
                    messages=messages(i), tools=TOOLS, stream=stream, prefix_key=f"job/{i % 10}"
                )
                body = json.dumps(request.body(pool.model)).encode()
                t0 = time.perf_counter()
                async with http.post(
                    url + "/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    payload = await response.read()
                if not stream:
                    json.loads(payload)
                t1 = time.perf_counter()
                await client.chat(pool, request, retry=retry)
                t2 = time.perf_counter()
                if i >= 50:
                    raw.append(t1 - t0)
                    wrapped.append(t2 - t1)
            overhead = [w - r for w, r in zip(wrapped, raw, strict=True)]
            figures["stream" if stream else "whole"] = {
                "chat": quantiles(wrapped),
                "raw": quantiles(raw),
                "overhead": quantiles(overhead),
            }
    await client.aclose()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        serve(ns.serve)
        return 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        figures = asyncio.run(measure(f"http://127.0.0.1:{port}", ns.calls))
    finally:
        process.terminate()
        process.wait(10)
    for mode, f in figures.items():
        print(
            f"{mode:>6}: chat() p50 {f['chat']['p50_ms']:.2f} ms p99 {f['chat']['p99_ms']:.2f} ms; "
            f"raw p50 {f['raw']['p50_ms']:.2f} ms p99 {f['raw']['p99_ms']:.2f} ms; "
            f"client overhead p50 {f['overhead']['p50_ms']:.2f} ms "
            f"p99 {f['overhead']['p99_ms']:.2f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_client.json"
    out.write_text(json.dumps({"calls": ns.calls, "figures": figures}, indent=2) + "\n")
    print(f"wrote bench/results/{out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
