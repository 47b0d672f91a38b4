"""Ledger write path under a swarm's load: 100 writers recording tool calls exactly once.

Each writer plays one sub-agent: for each of its keys it calls ``begin_tool_call`` (which
reserves one unit of the job's budget and decides to run) and, after the simulated tool,
``finish_tool_call`` (which stores the result durably). Two phases per database:

- ``saturated``: writers loop without pause, so the ledger is the bottleneck. This measures
  throughput, tool calls recorded per second. The time per call here is mostly queueing: by
  Little's law it is ``writers / throughput``.
- ``paced``: each tool runs ``--tool-ms`` (jittered, writers out of step) between begin and
  finish, like real sub-agents; 100 writers and 50 ms offer about 2,000 calls/s, the
  throughput target. This measures the ledger time one tool call pays: begin + finish.

Runs against PostgreSQL (``KSWARM_TEST_POSTGRES_URL``, else a throwaway cluster started with
``hack/pg.sh``, which is tuned for tests: fsync off) and SQLite in the same run; prints a
table and writes ``bench/results/ledger.json``. The machine's load average goes into the
JSON too: on a shared machine, figures move with it.

    python bench/bench_ledger.py [--writers 100] [--keys 20] [--tool-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kswarm.ledger import Ledger, ToolCallKey, migrating

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ledger.json"
TARGETS = {"records_per_s": 2000.0, "p50_ms": 5.0}


@contextmanager
def postgres() -> Iterator[str]:
    """``KSWARM_TEST_POSTGRES_URL``, else a throwaway cluster for the length of the run."""
    given = os.environ.get("KSWARM_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    directory = tempfile.mkdtemp(prefix="kswarm-bench-pg-")
    pg_sh = ["bash", str(REPO / "hack" / "pg.sh")]
    out = subprocess.run([*pg_sh, "start", directory], capture_output=True, text=True)
    if out.returncode != 0:
        subprocess.run([*pg_sh, "stop", directory], capture_output=True)
        raise SystemExit(f"hack/pg.sh start failed: {out.stderr.strip()}")
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([*pg_sh, "stop", directory], capture_output=True)


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def phase(
    ledger: Ledger, *, writers: int, keys: int, tool_s: float, budget: int | None
) -> dict[str, Any]:
    job = f"bench-{uuid.uuid4().hex[:12]}"
    await ledger.upsert_job(uid=job, namespace="bench", name=job, mode="swarm", spec={})
    begins: list[float] = []
    finishes: list[float] = []
    per_call: list[float] = []

    async def writer(w: int) -> None:
        agent = f"{job}/sub-{w}"
        rng = random.Random(w)
        if tool_s:
            await asyncio.sleep(rng.uniform(0, tool_s))  # sub-agents do not start in step
        for i in range(keys):
            key = ToolCallKey(job, agent, i // 4 + 1, i % 4)
            t0 = time.perf_counter()
            begin = await ledger.begin_tool_call(
                key, tool="search", arguments={"q": f"query {w}-{i}"}, max_tool_calls=budget
            )
            began = time.perf_counter() - t0
            begins.append(began)
            assert begin.outcome == "run", begin
            if tool_s:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * tool_s)
            t1 = time.perf_counter()
            await ledger.finish_tool_call(
                key, status="succeeded", result={"hits": [w, i]}, duration_seconds=tool_s
            )
            finished = time.perf_counter() - t1
            finishes.append(finished)
            per_call.append(began + finished)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    counters = await ledger.job_counters(job)
    assert counters.tool_calls_total == writers * keys, counters
    return {
        "records": len(per_call),
        "wall_s": round(wall, 3),
        "records_per_s": round(len(per_call) / wall, 1),
        "p50_ms": ms(per_call, 0.50),
        "p99_ms": ms(per_call, 0.99),
        "begin_p50_ms": ms(begins, 0.50),
        "finish_p50_ms": ms(finishes, 0.50),
        # This process's CPU per call (the database server's is not counted): it does not
        # move with the machine's load the way wall times do.
        "client_cpu_ms_per_record": round(cpu / len(per_call) * 1000, 3),
    }


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    migrating.upgrade(url)
    ledger = await Ledger.connect(url)
    try:
        await phase(ledger, writers=args.writers, keys=8, tool_s=0, budget=None)  # warm up
        budget = args.writers * args.keys
        return {
            "saturated": await phase(
                ledger, writers=args.writers, keys=args.keys, tool_s=0, budget=budget
            ),
            "paced": await phase(
                ledger,
                writers=args.writers,
                keys=args.keys,
                tool_s=args.tool_ms / 1000,
                budget=budget,
            ),
        }
    finally:
        await ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=100, help="concurrent sub-agents")
    parser.add_argument("--keys", type=int, default=20, help="tool calls per writer and phase")
    parser.add_argument("--tool-ms", type=float, default=50.0, help="simulated tool time, paced")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "writers": args.writers,
        "keys_per_writer": args.keys,
        "tool_ms": args.tool_ms,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "targets": {"postgresql": TARGETS},
        "results": {},
    }
    with postgres() as pg_url, tempfile.TemporaryDirectory(prefix="kswarm-bench-") as tmp:
        urls = {"postgresql": pg_url, "sqlite": f"sqlite:///{tmp}/ledger.db"}
        for name, url in urls.items():
            report["results"][name] = asyncio.run(measure(url, args))
    pg = report["results"]["postgresql"]
    report["targets_met"] = {
        "records_per_s": pg["saturated"]["records_per_s"] >= TARGETS["records_per_s"],
        "p50_ms": pg["paced"]["p50_ms"] <= TARGETS["p50_ms"],
    }
    print(
        f"{'database':<11} {'phase':<10} {'records/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu ms/rec':>10}"
    )
    for name, phases in report["results"].items():
        for phase_name, r in phases.items():
            print(
                f"{name:<11} {phase_name:<10} {r['records_per_s']:>10.0f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['client_cpu_ms_per_record']:>10.3f}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"targets (PostgreSQL): >= {TARGETS['records_per_s']:.0f} records/s saturated, "
        f"p50 <= {TARGETS['p50_ms']:.0f} ms paced: {report['targets_met']}; "
        f"load average {report['load_average_1m']} on {report['cpus']} CPUs; "
        f"wrote {RESULTS.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
