"""Ledger write path under a swarm's load: 100 writers recording tool calls exactly once.

Each writer plays one sub-agent: for each of its keys it calls ``begin_tool_call`` (which
reserves budget and decides to run) and ``finish_tool_call`` (which stores the result
durably). Two phases per database:

- ``saturated``: writers loop with no pause, so the ledger is the bottleneck; this measures
  throughput (tool calls recorded per second). By Little's law the time per call there is
  ``writers / throughput``: it measures queueing, not the ledger's own cost.
- ``paced``: writers pause for a simulated tool run between begin and finish, like real
  sub-agents; this measures the ledger time a tool call pays (begin + finish, p50/p99).

Runs against PostgreSQL (``KSWARM_TEST_POSTGRES_URL``, else a throwaway cluster started with
``hack/pg.sh``) and SQLite in the same run; prints a table and writes
``bench/results/ledger.json``.

    python bench/bench_ledger.py [--writers 100] [--keys 20] [--tool-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
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
TARGETS = {"postgresql": {"records_per_s": 2000.0, "p50_ms": 5.0}}


@contextmanager
def postgres() -> Iterator[str]:
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


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def phase(
    ledger: Ledger, *, writers: int, keys: int, tool_s: float, budget: int | None
) -> dict[str, Any]:
    job = f"bench-{uuid.uuid4().hex[:12]}"
    await ledger.upsert_job(uid=job, namespace="bench", name=job, mode="swarm", spec={})
    times: list[float] = []
    runs = 0

    async def writer(w: int) -> None:
        nonlocal runs
        agent = f"{job}/sub-{w}"
        for i in range(keys):
            key = ToolCallKey(job, agent, i // 4 + 1, i % 4)
            t0 = time.perf_counter()
            begin = await ledger.begin_tool_call(
                key, tool="search", arguments={"q": f"query {w}-{i}"}, max_tool_calls=budget
            )
            spent = time.perf_counter() - t0
            if begin.outcome == "run":
                runs += 1
                if tool_s:
                    await asyncio.sleep(tool_s)
                t1 = time.perf_counter()
                await ledger.finish_tool_call(
                    key, status="succeeded", result={"hits": [w, i]}, duration_seconds=tool_s
                )
                spent += time.perf_counter() - t1
            times.append(spent)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    wall = time.perf_counter() - t0
    counters = await ledger.job_counters(job)
    assert runs == writers * keys == counters.tool_calls_total, (runs, counters)
    return {
        "records": len(times),
        "wall_s": round(wall, 3),
        "records_per_s": round(len(times) / wall, 1),
        "p50_ms": round(percentile(times, 0.50) * 1000, 2),
        "p99_ms": round(percentile(times, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(times) * 1000, 2),
    }


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    migrating.upgrade(url)
    ledger = await Ledger.connect(url)
    try:
        await phase(ledger, writers=args.writers, keys=2, tool_s=0, budget=None)  # warm up
        budget = args.writers * args.keys * 10
        saturated = await phase(
            ledger, writers=args.writers, keys=args.keys, tool_s=0, budget=budget
        )
        paced = await phase(
            ledger, writers=args.writers, keys=args.keys, tool_s=args.tool_ms / 1000, budget=budget
        )
    finally:
        await ledger.close()
    return {"saturated": saturated, "paced": paced}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--keys", type=int, default=20, help="tool calls per writer per phase")
    parser.add_argument("--tool-ms", type=float, default=20.0, help="simulated tool run, paced")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "writers": args.writers,
        "keys_per_writer": args.keys,
        "tool_ms": args.tool_ms,
        "cpus": os.cpu_count(),
        "targets": TARGETS,
        "results": {},
    }
    with postgres() as pg_url, tempfile.TemporaryDirectory(prefix="kswarm-bench-") as tmp:
        urls = {"postgresql": pg_url, "sqlite": f"sqlite:///{tmp}/ledger.db"}
        for name, url in urls.items():
            report["results"][name] = asyncio.run(measure(url, args))
    print(f"{'database':<11} {'phase':<10} {'records/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, phases in report["results"].items():
        for phase_name, r in phases.items():
            print(
                f"{name:<11} {phase_name:<10} {r['records_per_s']:>10.0f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
            )
    pg = report["results"]["postgresql"]
    report["targets_met"] = {
        "records_per_s": pg["saturated"]["records_per_s"] >= TARGETS["postgresql"]["records_per_s"],
        "p50_ms": pg["paced"]["p50_ms"] <= TARGETS["postgresql"]["p50_ms"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"targets met: {report['targets_met']}; wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
