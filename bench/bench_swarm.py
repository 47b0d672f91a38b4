"""Swarm engine benchmarks, each a ratio measured side by side in one run (not a timed test).

1. Orchestration overhead: wallSeconds / modelSeconds of wide-search at a time scale where one
   simulated model step takes about one second (``--overhead-scale``), the median of
   ``--overhead-runs`` runs (target <= 1.08), and the overhead per critical step in
   milliseconds, which travels better between machines than the ratio.
2. Dispatch: 100 sub-agents x 15 no-op tool calls through the platform (zero modelled latency,
   the simulator in a process of its own as a model server is) against, on the same dev server:
   Temporal alone with the platform's shape (per child: 4 model steps as regular activities on
   a pool queue, each step's 5 tool calls as ONE local activity; target <= 1.2, what kswarm's
   own code adds), the naive floor (1,500 no-op regular activities across 100 children; target
   <= 1.0) and the raw local floor (1,500 no-op local activities; for the record). Next to the
   wall ratios, the worker's CPU seconds per job for the platform and the shape and their
   ratio: the figure that best survives a loaded machine, where walls mostly measure the load
   (CPU per job still drifts with the load, platform and shape together).
3. wide-search-300 on one ``kswarm worker`` process: phase, quality, the largest history
   (the orchestrator's with 300 children, and the largest child's: targets < 10,240 events and
   < 10 MB), the worker's peak RSS (target <= 1 GiB) and CPU seconds per tool call and per
   model call across the worker and the dev server: the figures a team multiplies to size a
   cluster. Wall and critical steps single/swarm: one agent cannot do the 300 items (its
   context outgrows the model's window before it ends), so single runs on wide-search (100
   items) next to swarm on the same, and the 300-item single figures are extrapolated linearly
   (3x the items) and marked so.
4. Two workers against one: the same wide-search job on one ``kswarm worker`` process, then on
   two, wall time of both and how the sub-agents' workflow tasks split between them.

    nice -n 0 .venv/bin/python -P bench/bench_swarm.py [--time-scale 0.05] [--overhead-scale 0.5]

Prints the figures with the load average and writes bench/results/swarm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kswarm import looping
from kswarm.embedded import DEFAULT_POOL, SIM_MODEL, SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.spec import parse_manifest
from kswarm.tools import Tool, ToolContext
from kswarm.workflows import SwarmJobInput, SwarmJobResult, SwarmWorkflow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KSWARM = str(Path(sys.executable).parent / "kswarm")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load(name: str, **spec: Any) -> SwarmJobInput:
    doc = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    doc["metadata"]["uid"] = uuid.uuid4().hex[:12]
    doc["spec"].update(spec)
    m = parse_manifest(doc)
    return SwarmJobInput(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec)


async def run_job(stack: Any, inp: SwarmJobInput) -> tuple[SwarmJobResult, Any]:
    handle = await stack.client.start_workflow(
        SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
    )
    return await handle.result(), handle


async def subagent_ids(stack: Any, inp: SwarmJobInput) -> list[str]:
    return [
        f"swarmjob-{a.id}" for a in await stack.ledger.list_agents(inp.uid) if a.role == "subagent"
    ]


async def history_sizes(stack: Any, inp: SwarmJobInput) -> dict[str, int]:
    """Events and bytes of the orchestrator's history, of the largest child's, and of all the
    job's histories together (what a Temporal cluster stores and replays per job)."""
    sizes: list[tuple[int, int]] = []
    for wid in [inp.workflow_id, *await subagent_ids(stack, inp)]:
        h = await stack.client.get_workflow_handle(wid).fetch_history()
        sizes.append((len(h.events), sum(e.ByteSize() for e in h.events)))
    children = sizes[1:] or [(0, 0)]
    return {
        "orchestrator_events": sizes[0][0],
        "orchestrator_bytes": sizes[0][1],
        "largest_child_events": max(e for e, _ in children),
        "largest_child_bytes": max(b for _, b in children),
        "job_events": sum(e for e, _ in sizes),
        "job_bytes": sum(b for _, b in sizes),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (``/proc/PID/stat``), children excluded."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@contextlib.asynccontextmanager
async def worker_processes(
    stack: Any, n: int, log: Path
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``n`` ``kswarm worker`` processes against the stack's Temporal, ledger and simulator,
    as a deployment runs them; stopped with SIGTERM on exit."""
    pools = log.with_suffix(".pools.yaml")
    pools.write_text(
        yaml.safe_dump(
            {
                "pools": [
                    {
                        "name": DEFAULT_POOL,
                        "model": SIM_MODEL,
                        "replicas": list(stack.pools.get(DEFAULT_POOL).replicas),
                        "maxConcurrency": 256,
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "KSWARM_TEMPORAL_ADDRESS": stack.server.address,
        "KSWARM_DATABASE_URL": stack.ledger.url,
        "KSWARM_POOLS_FILE": str(pools),
    }
    procs = []
    with log.open("ab") as out:
        for i in range(n):
            procs.append(
                subprocess.Popen(
                    [KSWARM, "worker"],
                    env={**env, "KSWARM_WORKER_INDEX": str(i)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    try:
        # A worker is ready once it polls: its identity shows on the job queue's pollers.
        for _ in range(600):
            if len(await pollers(stack)) >= n:
                break
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"kswarm worker exited with {proc.returncode}; see {log}")
            await asyncio.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def pollers(stack: Any) -> set[str]:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    resp = await stack.client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=stack.client.namespace,
            task_queue=TaskQueue(name=stack.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return {p.identity for p in resp.pollers}


async def task_identities(stack: Any, inp: SwarmJobInput) -> Counter[str]:
    """Which worker completed each sub-agent's workflow tasks (history ``identity``)."""
    seen: Counter[str] = Counter()
    for wid in await subagent_ids(stack, inp):
        h = await stack.client.get_workflow_handle(wid).fetch_history()
        for e in h.events:
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                seen[e.workflow_task_completed_event_attributes.identity] += 1
    return seen


# --------------------------------------------------------------------------- dispatch floors


@activity.defn(name="bench_noop")
async def bench_noop(i: int) -> int:
    return i


@activity.defn(name="bench_noop_batch")
async def bench_noop_batch(calls: int) -> int:
    """One step's tool calls in one local activity, run concurrently, as ``run_tools`` does."""
    done = await asyncio.gather(*(bench_noop(i) for i in range(calls)))
    return len(done)


NOOP_TIMEOUT = timedelta(seconds=30)
STEP_CALLS = 5


@workflow.defn(name="BenchFloorChild")
class FloorChild:
    """Raw local floor: each step's 5 no-op tool calls as 5 local activities in parallel."""

    @workflow.run
    async def run(self, calls: int) -> int:
        for _ in range(calls // STEP_CALLS):
            await asyncio.gather(
                *(
                    workflow.execute_local_activity(
                        bench_noop, i, start_to_close_timeout=NOOP_TIMEOUT
                    )
                    for i in range(STEP_CALLS)
                )
            )
        return calls


@workflow.defn(name="BenchNaiveChild")
class NaiveChild:
    """Naive floor: every tool call a regular activity (5 in parallel per step)."""

    @workflow.run
    async def run(self, calls: int) -> int:
        for _ in range(calls // STEP_CALLS):
            await asyncio.gather(
                *(
                    workflow.execute_activity(bench_noop, i, start_to_close_timeout=NOOP_TIMEOUT)
                    for i in range(STEP_CALLS)
                )
            )
        return calls


async def _agent(calls: int, model_call: Callable[[int], Awaitable[int]]) -> int:
    for step in range(calls // STEP_CALLS + 1):
        await model_call(step)
        if step < calls // STEP_CALLS:
            await workflow.execute_local_activity(
                bench_noop_batch, STEP_CALLS, start_to_close_timeout=NOOP_TIMEOUT
            )
    return calls


@workflow.defn(name="BenchShapeChild")
class ShapeChild:
    """The platform's new Temporal shape without its work: 4 model steps as regular activities
    on a pool queue, the first 3 each followed by ONE local activity with the step's 5 calls."""

    @workflow.run
    async def run(self, calls: int) -> int:
        async def model_call(step: int) -> int:
            return await workflow.execute_activity(
                bench_noop, step, task_queue="bench-floor-pool", start_to_close_timeout=NOOP_TIMEOUT
            )

        return await _agent(calls, model_call)


SHAPES = {"local_floor": FloorChild.run, "naive": NaiveChild.run, "shape": ShapeChild.run}


@workflow.defn(name="BenchFloorParent")
class FloorParent:
    @workflow.run
    async def run(self, children: int, shape: str = "local_floor") -> int:
        wid = workflow.info().workflow_id
        child = SHAPES[shape]
        done = await asyncio.gather(
            *(workflow.execute_child_workflow(child, 15, id=f"{wid}-{i}") for i in range(children))
        )
        return sum(done)


async def _noop_tool(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"ok": True}


async def dispatch(runs: int) -> dict[str, Any]:
    tools = demo_tools()
    tools.register(
        Tool(name="noop", description="does nothing", parameters={"type": "object"}, fn=_noop_tool)
    )
    # The simulator runs in a process of its own, as a model server does: on PYTHONPATH so that
    # ``kswarm sim --behaviour`` finds the benchmark's behaviour.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")])
    )
    sim = SimOptions(replicas=1, time_scale=0.0, extra={"behaviour": "sim_behaviours:noop_swarm"})
    out: dict[str, list[float]] = {"platform": [], **{shape: [] for shape in SHAPES}}
    # The worker's CPU per job: this process runs the platform's worker and the floors' (the
    # simulator and the dev server are processes of their own). It moves far less with the
    # machine's load than wall time does (on 2 shared cores: about +-20% against 2 to 4x), and
    # platform and shape move together, so their ratio is the one to compare across runs.
    cpu: dict[str, list[float]] = {"platform": [], "shape": []}
    async with embedded_stack(sim=sim, tools=tools) as stack:
        client: Client = stack.client
        async with (
            Worker(
                client,
                task_queue="bench-floor",
                workflows=[FloorParent, FloorChild, NaiveChild, ShapeChild],
                activities=[bench_noop, bench_noop_batch],
                workflow_runner=UnsandboxedWorkflowRunner(),
                max_concurrent_local_activities=1000,
                max_concurrent_workflow_tasks=100,
            ),
            Worker(client, task_queue="bench-floor-pool", activities=[bench_noop]),
        ):
            for _ in range(runs):
                for shape in SHAPES:
                    t, c = time.perf_counter(), time.process_time()
                    await client.execute_workflow(
                        FloorParent.run,
                        args=[100, shape],
                        id=str(uuid.uuid4()),
                        task_queue="bench-floor",
                    )
                    out[shape].append(time.perf_counter() - t)
                    if shape in cpu:
                        cpu[shape].append(time.process_time() - c)
                inp = load(
                    "quickstart", tools=["noop"], subagents={"maxConcurrent": 100, "maxSteps": 10}
                )
                t, c = time.perf_counter(), time.process_time()
                result, _ = await run_job(stack, inp)
                out["platform"].append(time.perf_counter() - t)
                cpu["platform"].append(time.process_time() - c)
                assert result.phase == "Succeeded", result.reason
                assert result.subagents_spawned == 100
    best = {k: min(v) for k, v in out.items()}
    least_cpu = {k: min(v) for k, v in cpu.items()}
    return {
        "platform_cpu_seconds": least_cpu["platform"],
        "shape_cpu_seconds": least_cpu["shape"],
        "cpu_ratio": least_cpu["platform"] / least_cpu["shape"],
        "platform_cpu_runs": cpu["platform"],
        "shape_cpu_runs": cpu["shape"],
        "platform_seconds": best["platform"],
        "shape_seconds": best["shape"],
        "naive_seconds": best["naive"],
        "local_floor_seconds": best["local_floor"],
        "shape_ratio": best["platform"] / best["shape"],
        "naive_ratio": best["platform"] / best["naive"],
        "local_floor_ratio": best["platform"] / best["local_floor"],
        # Each run's platform / shape, both measured back to back in that run.
        "shape_ratio_runs": [p / q for p, q in zip(out["platform"], out["shape"], strict=True)],
    }


# --------------------------------------------------------------------------- wide-search-300


def _summary(r: SwarmJobResult) -> dict[str, Any]:
    return {
        "phase": r.phase,
        "criticalSteps": r.critical_steps,
        "totalSteps": r.total_steps,
        "wallSeconds": r.wall_seconds,
        "modelSeconds": r.model_seconds,
        "quality": r.quality,
        "subagents": r.subagents_spawned,
    }


async def wide(time_scale: float, log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"time_scale": time_scale}
    async with embedded_stack(sim=SimOptions(time_scale=time_scale), run_worker=False) as stack:
        server_pid = stack.server.process.pid
        async with worker_processes(stack, 1, log) as procs:
            wpid = procs[0].pid
            inp = load("wide-search-300")
            cpu0 = cpu_seconds(wpid) + cpu_seconds(server_pid)
            big, _ = await run_job(stack, inp)
            cpu = cpu_seconds(wpid) + cpu_seconds(server_pid) - cpu0
            out["worker_peak_rss_mib"] = peak_rss_mib(wpid)
            await stack.ledger.flush()
            tool_calls = len(await stack.ledger.list_tool_calls(inp.uid))
            model_calls = len(await stack.ledger.list_model_calls(inp.uid))
            out["histories"] = await history_sizes(stack, inp)
            # One agent cannot do the 300 items: its context outgrows the model's window (131,072
            # tokens) before it ends. Single runs on 100 items, next to swarm on the same 100.
            swarm, _ = await run_job(stack, load("wide-search"))
            single, _ = await run_job(stack, load("wide-search", mode="single"))
    for r in (big, swarm, single):
        assert r.phase == "Succeeded", r.reason
    items = 300 / 100
    out.update(
        swarm_300=_summary(big),
        swarm_100=_summary(swarm),
        single_100=_summary(single),
        single_300_extrapolated={
            "criticalSteps": single.critical_steps * items,
            "wallSeconds": single.wall_seconds * items,
        },
        tool_calls=tool_calls,
        model_calls=model_calls,
        cpu_seconds=cpu,
        cpu_seconds_per_tool_call=cpu / tool_calls,
        cpu_seconds_per_model_call=cpu / model_calls,
        critical_steps_ratio_100=single.critical_steps / swarm.critical_steps,
        wall_ratio_100=single.wall_seconds / swarm.wall_seconds,
        critical_steps_ratio_300=single.critical_steps * items / big.critical_steps,
        wall_ratio_300=single.wall_seconds * items / big.wall_seconds,
    )
    return out


async def two_workers(time_scale: float, log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"time_scale": time_scale}
    async with embedded_stack(sim=SimOptions(time_scale=time_scale), run_worker=False) as stack:
        for n in (1, 2):
            async with worker_processes(stack, n, log):
                inp = load("wide-search")
                r, _ = await run_job(stack, inp)
                assert r.phase == "Succeeded", r.reason
                split = await task_identities(stack, inp)
                await stack.ledger.flush()
                calls = await stack.ledger.list_tool_calls(inp.uid)
            out[f"workers_{n}"] = {
                **_summary(r),
                "tool_calls": len(calls),
                "distinct_keys": len({c.key for c in calls}),
                "deduplicated": sum(c.deduplicated for c in calls),
                "subagent_workflow_tasks_by_worker": dict(split),
            }
    return out


async def overhead(time_scale: float, runs: int) -> dict[str, Any]:
    samples = []
    async with embedded_stack(sim=SimOptions(time_scale=time_scale)) as stack:
        for _ in range(runs):
            inp = load("wide-search")
            r, _ = await run_job(stack, inp)
            assert r.phase == "Succeeded", r.reason
            samples.append(
                {
                    "wallSeconds": r.wall_seconds,
                    "modelSeconds": r.model_seconds,
                    "criticalSteps": r.critical_steps,
                    "ratio": r.wall_seconds / r.model_seconds,
                    "ms_per_critical_step": 1000
                    * (r.wall_seconds - r.model_seconds)
                    / r.critical_steps,
                }
            )
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    step_seconds = sorted(
        c.model_seconds
        for c in calls
        if c.status == "ok" and c.model_seconds is not None and "/s" in c.agent_id
    )
    return {
        "time_scale": time_scale,
        "runs": samples,
        "ratio_median": statistics.median(s["ratio"] for s in samples),
        "ms_per_critical_step_median": statistics.median(
            s["ms_per_critical_step"] for s in samples
        ),
        "subagent_step_model_seconds_p50": step_seconds[len(step_seconds) // 2],
    }


def _print_overhead(o: dict[str, Any], runs: int) -> None:
    print(
        f"orchestration overhead, wide-search at time scale {o['time_scale']} (a sub-agent's "
        f"model step takes {o['subagent_step_model_seconds_p50']:.2f} s, median), {runs} runs:"
    )
    for i, s in enumerate(o["runs"], 1):
        print(
            f"  run {i}: wallSeconds / modelSeconds = {s['wallSeconds']:.2f}/"
            f"{s['modelSeconds']:.2f} = {s['ratio']:.3f}; "
            f"{s['ms_per_critical_step']:.0f} ms per critical step ({s['criticalSteps']} steps)"
        )
    print(
        f"  median {o['ratio_median']:.3f} (target <= 1.08); "
        f"{o['ms_per_critical_step_median']:.0f} ms overhead per critical step"
    )


def _print_dispatch(d: dict[str, Any]) -> None:
    print("dispatch, 100 sub-agents x 15 no-op tool calls (best of the runs, same dev server):")
    print(
        f"  platform {d['platform_seconds']:.2f} s / Temporal alone with the platform's shape "
        f"(4 regular activities + 3 one-local-activity tool batches per child) "
        f"{d['shape_seconds']:.2f} s = {d['shape_ratio']:.2f} (target <= 1.2); run by run "
        f"{', '.join(f'{x:.2f}' for x in d['shape_ratio_runs'])}"
    )
    print(
        f"  worker CPU per job (this process: the platform's worker, or the shape's): platform "
        f"{d['platform_cpu_seconds']:.2f} s / shape {d['shape_cpu_seconds']:.2f} s = "
        f"{d['cpu_ratio']:.2f} (least of the runs; the ratio that survives a loaded machine; "
        f"runs: platform {', '.join(f'{x:.2f}' for x in d['platform_cpu_runs'])}, shape "
        f"{', '.join(f'{x:.2f}' for x in d['shape_cpu_runs'])})"
    )
    print(
        f"  platform / naive floor (1,500 no-op regular activities) {d['naive_seconds']:.2f} s = "
        f"{d['naive_ratio']:.2f} (target <= 1.0)"
    )
    print(
        f"  platform / raw local floor (1,500 no-op local activities) "
        f"{d['local_floor_seconds']:.2f} s = {d['local_floor_ratio']:.2f} (for the record)"
    )


def _print_wide(w: dict[str, Any]) -> None:
    big, h = w["swarm_300"], w["histories"]
    print(f"wide-search-300 at time scale {w['time_scale']}, one kswarm worker process:")
    print(
        f"  {big['phase']}, quality {big['quality']}, {big['subagents']} sub-agents, "
        f"{w['tool_calls']} tool calls, {w['model_calls']} model calls, "
        f"wall {big['wallSeconds']:.1f} s, criticalSteps {big['criticalSteps']}"
    )
    print(
        f"  orchestrator history {h['orchestrator_events']} events, "
        f"{h['orchestrator_bytes'] / 1e6:.2f} MB; largest child {h['largest_child_events']} "
        f"events, {h['largest_child_bytes'] / 1e6:.3f} MB (targets < 10,240 and < 10 MB)"
    )
    print(f"  all the job's histories: {h['job_events']} events, {h['job_bytes'] / 1e6:.2f} MB")
    print(f"  worker peak RSS {w['worker_peak_rss_mib']:.0f} MiB (target <= 1024)")
    print(
        f"  CPU (worker + dev server) {w['cpu_seconds']:.1f} s: "
        f"{w['cpu_seconds_per_tool_call'] * 1000:.2f} ms per tool call, or "
        f"{w['cpu_seconds_per_model_call'] * 1000:.2f} ms per model call (all of the job's CPU "
        "divided by either count)"
    )
    s100, g100, x = w["swarm_100"], w["single_100"], w["single_300_extrapolated"]
    print(
        "  single/swarm on wide-search (100 items, measured): criticalSteps "
        f"{g100['criticalSteps']}/{s100['criticalSteps']} = {w['critical_steps_ratio_100']:.1f}x, "
        f"wall {g100['wallSeconds']:.1f}/{s100['wallSeconds']:.1f} = {w['wall_ratio_100']:.1f}x; "
        f"quality single {g100['quality']}, swarm {s100['quality']}"
    )
    print(
        "  single/swarm on 300 items, single EXTRAPOLATED as 3x the 100-item single run (one "
        "agent's context outgrows the model's 131,072 tokens on 300 items): criticalSteps "
        f"{x['criticalSteps']:.0f}/{big['criticalSteps']} = {w['critical_steps_ratio_300']:.1f}x, "
        f"wall {x['wallSeconds']:.1f}/{big['wallSeconds']:.1f} = {w['wall_ratio_300']:.1f}x"
    )


def _print_two(t: dict[str, Any]) -> None:
    print(f"two kswarm workers against one, wide-search at time scale {t['time_scale']}:")
    for n in (1, 2):
        r = t[f"workers_{n}"]
        print(
            f"  {n} worker(s): {r['phase']}, wall {r['wallSeconds']:.1f} s, criticalSteps "
            f"{r['criticalSteps']}, totalSteps {r['totalSteps']}, tool calls {r['tool_calls']} "
            f"({r['distinct_keys']} distinct keys, {r['deduplicated']} deduplicated), quality "
            f"{r['quality']}; sub-agent workflow tasks by worker "
            f"{sorted(r['subagent_workflow_tasks_by_worker'].values(), reverse=True)}"
        )


async def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--time-scale", type=float, default=0.05)
    p.add_argument("--overhead-scale", type=float, default=0.5)
    p.add_argument("--overhead-runs", type=int, default=5)
    p.add_argument("--dispatch-runs", type=int, default=2)
    sections = ["overhead", "dispatch", "wide", "workers"]
    p.add_argument("--skip", nargs="*", default=[], choices=sections)
    ns = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "workers.log"
    log.unlink(missing_ok=True)
    results: dict[str, Any] = {
        "event_loop": looping.loop_name(),
        "load_average_before": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    print(f"event loop: {results['event_loop']} (KSWARM_EVENT_LOOP=asyncio for the standard one)")
    print(
        "load average before: {:.2f} {:.2f} {:.2f} on {} CPUs".format(
            *results["load_average_before"], results["cpus"]
        )
    )
    if "overhead" not in ns.skip:
        results["overhead"] = await overhead(ns.overhead_scale, ns.overhead_runs)
        _print_overhead(results["overhead"], ns.overhead_runs)
    if "dispatch" not in ns.skip:
        results["dispatch"] = await dispatch(ns.dispatch_runs)
        _print_dispatch(results["dispatch"])
    if "wide" not in ns.skip:
        results["wide"] = await wide(ns.time_scale, log)
        _print_wide(results["wide"])
    if "workers" not in ns.skip:
        results["workers"] = await two_workers(ns.time_scale, log)
        _print_two(results["workers"])
    results["load_average_after"] = os.getloadavg()
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*results["load_average_after"]))
    (RESULTS / "swarm.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(looping.run(main()))
