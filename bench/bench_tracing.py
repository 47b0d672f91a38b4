"""Tracing overhead: the wide-search job with tracing on against off, side by side in one run.

Both arms run the same job on the same embedded stack (Temporal dev server, simulated pool,
SQLite ledger), each with a fresh client and workers: "off" connects with kswarm's telemetry
plugin with traces off (metrics only, what an untraced worker runs), "on" with traces on,
exporting every span over OTLP/HTTP to a receiver in another process (as to a collector). Arms
alternate (off, on, on, off, ...) so drift of a shared machine hits both; the figures are the
ratio of the medians (target <= 1.05), the median ratio of back-to-back pairs, and the ratio of
the process's CPU time, which a busy shared machine disturbs far less than wall time. It also
counts the exported spans of each traced job (nothing may be dropped) and times one span helper
with tracing off and on.

    .venv/bin/python bench/bench_tracing.py [--runs 2] [--time-scale 0.01] [--job wide-search]

Prints the figures and writes bench/results/tracing.json.
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
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from kswarm import telemetry
from kswarm.embedded import EmbeddedStack, SimOptions, embedded_stack
from kswarm.llm.client import LLMClient
from kswarm.spec import parse_manifest
from kswarm.telemetry import spans as attr
from kswarm.telemetry import tracing
from kswarm.telemetry.interceptors import SwarmTelemetryPlugin
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.activities import SwarmActivities
from kswarm.workflows.worker import build_workers, running_workers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def load(name: str) -> SwarmJobInput:
    doc = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    doc["metadata"]["uid"] = uuid.uuid4().hex[:12]
    m = parse_manifest(doc)
    return SwarmJobInput(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec)


async def run_arm(stack: EmbeddedStack, job: str, *, traced: bool) -> tuple[float, float, Any]:
    """Wall and CPU seconds of one job (start to result; this process's threads, Temporal's
    core and the span exporter included), on workers of a client of its own."""
    plugin = SwarmTelemetryPlugin(traces=traced, metrics=True, pools=stack.pools)
    client = await Client.connect(stack.server.address, plugins=[plugin])
    llm = LLMClient()
    activities = SwarmActivities(stack.ledger, llm, stack.pools, stack.tools)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    inp = load(job)
    try:
        async with running_workers(build_workers(client, activities, task_queue=queue)):
            started, cpu = time.perf_counter(), time.process_time()
            result = await client.execute_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=queue
            )
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await llm.aclose()
    assert result.phase == "Succeeded", result.reason
    return wall, cpu, result


def span_helper_cost(n: int = 20_000) -> dict[str, float]:
    """Microseconds per ``chat_span`` block: tracing off, and on with no exporter."""
    from opentelemetry.sdk.trace import TracerProvider

    saved = tracing._tracer, tracing._activity_tracer
    out = {}
    try:
        for label, provider in (("off", None), ("on", TracerProvider())):
            tracing.use_tracer_provider(provider)
            t0 = time.perf_counter()
            for i in range(n):
                with tracing.chat_span(
                    job_uid="j", agent_id="a", role="subagent", stage=1, step=i, model="m", pool="p"
                ) as span:
                    tracing.set_usage(span, 10, 2)
            out[label] = (time.perf_counter() - t0) / n * 1e6
    finally:
        tracing._tracer, tracing._activity_tracer = saved
    return out


def count_spans(path: Path, uid: str) -> int:
    return sum(1 for r in attr.read_jsonl(path) if r.attributes.get(attr.JOB_UID) == uid)


async def main(ns: argparse.Namespace) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="kswarm-bench-tracing-"))
    spans_file = tmp / "spans.jsonl"
    receiver = subprocess.Popen(
        [sys.executable, "-P", "-m", "kswarm.telemetry.receiving", "--port", str(ns.port),
         "--out", str(spans_file)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert receiver.stdout is not None
    receiver.stdout.readline()  # "receiving spans on ..."
    telemetry.configure_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ns.port}"})
    walls: dict[str, list[float]] = {"off": [], "on": []}
    cpus: dict[str, list[float]] = {"off": [], "on": []}
    spans: list[dict[str, int]] = []
    try:
        sim = SimOptions(time_scale=ns.time_scale, replicas=2)
        async with embedded_stack(
            sim=sim, database_url=f"sqlite:///{tmp / 'ledger.db'}", run_worker=False
        ) as stack:
            await run_arm(stack, "quickstart", traced=True)  # warm up both paths
            await run_arm(stack, "quickstart", traced=False)
            for i in range(ns.runs):
                for arm in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    wall, cpu, result = await run_arm(stack, ns.job, traced=arm == "on")
                    walls[arm].append(wall)
                    cpus[arm].append(cpu)
                    print(
                        f"  {arm:>3}: {wall:7.2f} s wall, {cpu:7.2f} s CPU "
                        f"({result.total_steps} steps)",
                        flush=True,
                    )
                    if arm == "on":
                        telemetry.force_flush()
                        await asyncio.sleep(1.0)
                        counters = await stack.ledger.job_counters(result.uid)
                        expected = (
                            1 + 1 + result.subagents_spawned + counters.llm_calls
                            + counters.by_tool.get("search", 0)
                        )  # fmt: skip
                        spans.append(
                            {"expected": expected, "exported": count_spans(spans_file, result.uid)}
                        )
    finally:
        tracing.shutdown_tracing()
        receiver.terminate()
        receiver.wait(10)
    off, on = statistics.median(walls["off"]), statistics.median(walls["on"])
    cpu_off, cpu_on = statistics.median(cpus["off"]), statistics.median(cpus["on"])
    pairs = [b / a for a, b in zip(walls["off"], walls["on"], strict=True)]
    cost = span_helper_cost()
    return {
        "job": ns.job,
        "time_scale": ns.time_scale,
        "runs_per_arm": ns.runs,
        "wall_off_s": walls["off"],
        "wall_on_s": walls["on"],
        "ratio_on_off": round(on / off, 4),
        "pair_ratios": [round(r, 4) for r in pairs],
        "median_pair_ratio": round(statistics.median(pairs), 4),
        "cpus": os.cpu_count(),
        "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        "cpu_off_s": cpus["off"],
        "cpu_on_s": cpus["on"],
        "cpu_ratio_on_off": round(cpu_on / cpu_off, 4),
        "target_ratio": 1.05,
        "spans": spans,
        "span_helper_us": {k: round(v, 3) for k, v in cost.items()},
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", default="wide-search", help="example name (default wide-search)")
    p.add_argument("--runs", type=int, default=2, help="runs per arm (default 2)")
    p.add_argument("--time-scale", type=float, default=0.01, help="simulator time scale")
    p.add_argument("--port", type=int, default=43181, help="port of the span receiver")
    out = asyncio.run(main(p.parse_args()))
    ok = out["ratio_on_off"] <= out["target_ratio"]
    print(
        f"tracing on/off wall-time ratio {out['ratio_on_off']:.3f} "
        f"(target <= {out['target_ratio']}: {'met' if ok else 'NOT met'}), "
        f"median of back-to-back pairs {out['median_pair_ratio']:.3f}, "
        f"CPU ratio {out['cpu_ratio_on_off']:.3f} (load average before/after "
        f"{out['load_average_before_after']} on {out['cpus']} CPUs); "
        f"spans exported/expected {[(s['exported'], s['expected']) for s in out['spans']]}; "
        f"span helper {out['span_helper_us']['off']:.2f} us off, "
        f"{out['span_helper_us']['on']:.2f} us on"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracing.json").write_text(json.dumps(out, indent=2) + "\n")
