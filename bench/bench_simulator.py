"""How much latency the simulator adds on top of what it models, at 1,000 concurrent requests.

The simulator is only useful if its answers arrive when its cost model says they should: every
benchmark that compares routers or swarms against it would otherwise measure Python. This starts
one simulated replica in its own process (as ``kswarm sim`` runs), opens 1,000 keep-alive
connections, fires 1,000 chat requests at once from this process, and compares, per request, the
modelled seconds the simulator reports (``kswarm.model_seconds``, queueing included) with

* ``server``: from the handler's start to the answer being built (``kswarm.wall_seconds``): how
  precisely the engine keeps its own schedule;
* ``from send``: from the moment the request's bytes were handed to the socket (an aiohttp trace
  hook) to the answer parsed: the simulator, its HTTP stack and the loopback, without the time
  this load generator needs to get 1,000 requests out (the figure the target applies to);
* ``from call``: from the call to the answer, that queue included (the strictest figure).

Added latency is ``sum(measured - modelled) / sum(modelled)``; the target is under 5 %. For
scale, the same load is then sent to a ``floor`` server: bare aiohttp that parses the body and
sleeps exactly the modelled time the simulator gave that same request, i.e. what the HTTP stack
alone adds on this machine under the same completion profile.

    python bench/bench_simulator.py [--requests 1000] [--time-scales 1.0,0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kswarm.devserver import free_port
from kswarm.embedded import wait_healthy

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT_WORDS = 200
OUTPUT_TOKENS = (50, 250)
TARGET_PERCENT = 5.0


def sized_output(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The bench behaviour: a short answer charged a random number of output tokens."""
    tokens = rng.randint(*OUTPUT_TOKENS)
    return {"role": "assistant", "content": "ok", "kswarm_output_tokens": tokens}


def serve(port: int, time_scale: float) -> None:
    from kswarm.sim import serving as simulator
    from kswarm.sim.config import SimConfig

    asyncio.run(simulator.serve(port, SimConfig(time_scale=time_scale, behaviour=sized_output)))


def serve_floor(port: int) -> None:
    async def answer(request: web.Request) -> web.Response:
        received = time.perf_counter()
        seconds = (await request.json())["sleep"]
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - received
        return web.json_response({"kswarm": {"model_seconds": seconds, "wall_seconds": wall}})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", answer)
        app.router.add_get("/health", lambda _: web.Response())  # type: ignore[arg-type,return-value]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(*args: str) -> tuple[str, subprocess.Popen[bytes]]:
    """This script in server mode, in its own process; its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), *args],
        stdout=subprocess.DEVNULL,
    )
    return f"http://127.0.0.1:{port}", process


def bodies(n: int, salt: int, sleeps: list[float] | None = None) -> list[bytes]:
    """Distinct request bodies, encoded before the clock starts (``sleep``: for the floor)."""
    out = []
    for i in range(n):
        words = " ".join(f"w{(i * 7919 + k * salt) % 10007}" for k in range(PROMPT_WORDS))
        body: dict[str, Any] = {
            "model": "kswarm-sim",
            "messages": [{"role": "user", "content": f"{salt}:{i} {words}"}],
        }
        if sleeps is not None:
            body["sleep"] = sleeps[i]
        out.append(json.dumps(body).encode())
    return out


async def _sent(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestChunkSentParams
) -> None:
    context.trace_request_ctx["sent"] = time.perf_counter()


def tracing() -> aiohttp.TraceConfig:
    """Records when each request's body went to the socket."""
    config = aiohttp.TraceConfig()
    config.on_request_chunk_sent.append(_sent)
    return config


async def one(http: aiohttp.ClientSession, url: str, body: bytes) -> dict[str, float]:
    headers = {"Content-Type": "application/json"}
    trace: dict[str, float] = {}
    t0 = time.perf_counter()
    async with http.post(
        url + "/v1/chat/completions", data=body, headers=headers, trace_request_ctx=trace
    ) as response:
        response.raise_for_status()
        answer = await response.json()
    t1 = time.perf_counter()
    extra = answer["kswarm"]
    return {
        "from_call": t1 - t0,
        "from_send": t1 - trace.get("sent", t0),
        "model": extra["model_seconds"],
        "server": extra["wall_seconds"],
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def measure(url: str, requests: int, sleeps: list[float] | None) -> dict[str, Any]:
    """Fire ``requests`` at once, after a warm-up round that opens the connections."""
    connector = aiohttp.TCPConnector(limit=requests + 10)
    async with aiohttp.ClientSession(connector=connector, trace_configs=[tracing()]) as http:
        await wait_healthy([url])
        warm = [0.0] * requests if sleeps is not None else None
        await asyncio.gather(*(one(http, url, b) for b in bodies(requests, 3, warm)))
        load = bodies(requests, 5, sleeps)
        t0 = time.perf_counter()
        rows = await asyncio.gather(*(one(http, url, b) for b in load))
        makespan = time.perf_counter() - t0
    modelled = sum(r["model"] for r in rows)
    server_added = [r["server"] - r["model"] for r in rows]
    send_added = [r["from_send"] - r["model"] for r in rows]
    e2e_added = [r["from_call"] - r["model"] for r in rows]
    return {
        "makespan_seconds": makespan,
        "modelled_mean_seconds": modelled / len(rows),
        "modelled_max_seconds": max(r["model"] for r in rows),
        "server_added_percent": 100 * sum(server_added) / modelled,
        "server_added_p99_ms": 1000 * percentile(server_added, 99),
        "send_added_percent": 100 * sum(send_added) / modelled,
        "send_added_p50_ms": 1000 * statistics.median(send_added),
        "send_added_p99_ms": 1000 * percentile(send_added, 99),
        "e2e_added_percent": 100 * sum(e2e_added) / modelled,
        "e2e_added_p50_ms": 1000 * statistics.median(e2e_added),
        "e2e_added_p99_ms": 1000 * percentile(e2e_added, 99),
        "modelled": [r["model"] for r in rows],
    }


def run(requests: int, time_scale: float | None, sleeps: list[float] | None) -> dict[str, Any]:
    """Against the simulator (``time_scale``) or the floor server (``sleeps``)."""
    url, process = start_server(*(["sim", str(time_scale)] if sleeps is None else ["floor"]))
    try:
        return asyncio.run(measure(url, requests, sleeps))
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--time-scales", default="1.0,0.1")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("server_args", nargs="*", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        if ns.server_args[0] == "sim":
            serve(ns.serve, float(ns.server_args[1]))
        else:
            serve_floor(ns.serve)
        return 0
    runs = []
    for scale in (float(s) for s in ns.time_scales.split(",")):
        sim = run(ns.requests, scale, None)
        floor = run(ns.requests, None, sim.pop("modelled"))
        floor.pop("modelled")
        runs.append(
            {"time_scale": scale, "requests": ns.requests, "simulator": sim, "floor": floor}
        )
        verdict = "met" if sim["send_added_percent"] < TARGET_PERCENT else "NOT MET"
        print(
            f"time scale {scale:g}, {ns.requests} concurrent requests: modelled mean "
            f"{sim['modelled_mean_seconds']:.2f} s, max {sim['modelled_max_seconds']:.2f} s, "
            f"makespan {sim['makespan_seconds']:.2f} s\n"
            f"  server side (engine schedule):  +{sim['server_added_percent']:.2f} %  "
            f"(p99 +{sim['server_added_p99_ms']:.0f} ms)\n"
            f"  from send:                      +{sim['send_added_percent']:.2f} %  "
            f"(p50 +{sim['send_added_p50_ms']:.0f} ms, p99 +{sim['send_added_p99_ms']:.0f} ms)  "
            f"target < {TARGET_PERCENT:g} %: {verdict}\n"
            f"  from call:                      +{sim['e2e_added_percent']:.2f} %  "
            f"(p50 +{sim['e2e_added_p50_ms']:.0f} ms, p99 +{sim['e2e_added_p99_ms']:.0f} ms)\n"
            f"  floor (bare aiohttp): from send p50 +{floor['send_added_p50_ms']:.0f} ms,"
            f" from call p50 +{floor['e2e_added_p50_ms']:.0f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_simulator.json"
    out.write_text(json.dumps({"target_percent": TARGET_PERCENT, "runs": runs}, indent=2) + "\n")
    print(f"wrote bench/results/{out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
