"""Swarm engine benchmarks, each a ratio measured side by side in one run (not a timed test).

1. wide-search, same simulator settings, swarm against single:
   criticalSteps(single) / criticalSteps(swarm) and wallSeconds(single) / wallSeconds(swarm)
   (targets >= 4.5).
2. Orchestration overhead: wallSeconds / modelSeconds of the swarm run (target <= 1.10), at a
   time scale where one simulated model step takes about one second (``--overhead-scale``).
3. Dispatch: 100 sub-agents x 15 no-op tool calls through the platform (zero modelled latency,
   the simulator in a process of its own as a model server is) against the raw Temporal floor,
   1,500 no-op local activities across 100 child workflows, on the same dev server (target <=
   1.5). Also printed: Temporal alone with the platform's shape (each child's 4 model steps as
   regular activities on a queue of their own), which splits the gap into Temporal's share
   and kswarm's; and Temporal alone had the model calls been local activities as well (which
   DESIGN.md rules out: model calls are regular activities on their pool's queue), the lowest
   ratio any platform that makes each model call and tool call an activity could reach.
4. The largest workflow history of the wide-search job: events and bytes (targets < 10,240 and
   < 10 MB) and the process's peak memory with 100 sub-agents running (target <= 1 GiB).

    .venv/bin/python bench/bench_swarm.py [--time-scale 0.05] [--overhead-scale 0.5]

Prints the figures and writes bench/results/swarm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kswarm import looping
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.spec import parse_manifest
from kswarm.tools import Tool, ToolContext
from kswarm.workflows import SwarmJobInput, SwarmJobResult, SwarmWorkflow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


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


async def history_sizes(stack: Any, inp: SwarmJobInput) -> tuple[int, int]:
    ids = [inp.workflow_id] + [
        f"swarmjob-{a.id}" for a in await stack.ledger.list_agents(inp.uid) if a.role == "subagent"
    ]
    worst_events = worst_bytes = 0
    for wid in ids:
        h = await stack.client.get_workflow_handle(wid).fetch_history()
        worst_events = max(worst_events, len(h.events))
        worst_bytes = max(worst_bytes, sum(e.ByteSize() for e in h.events))
    return worst_events, worst_bytes


# --------------------------------------------------------------------------- dispatch floor


@activity.defn(name="bench_noop")
async def bench_noop(i: int) -> int:
    return i


NOOP_TIMEOUT = timedelta(seconds=30)


async def _tool_calls() -> None:
    """One step's 5 no-op tool calls: local activities, in parallel."""
    await asyncio.gather(
        *(
            workflow.execute_local_activity(bench_noop, i, start_to_close_timeout=NOOP_TIMEOUT)
            for i in range(5)
        )
    )


async def _agent(calls: int, model_call: Callable[[int], Awaitable[int]]) -> int:
    """The platform's shape without its work: a model step, then 5 tool calls, until ``calls``
    are made, and a last model step (the answer)."""
    for step in range(calls // 5 + 1):
        await model_call(step)
        if step < calls // 5:
            await _tool_calls()
    return calls


@workflow.defn(name="BenchFloorChild")
class FloorChild:
    @workflow.run
    async def run(self, calls: int) -> int:
        for _ in range(calls // 5):
            await _tool_calls()
        return calls


@workflow.defn(name="BenchShapeChild")
class ShapeChild:
    """The platform's Temporal shape: 4 model steps as regular activities on a queue of their
    own, the first 3 each followed by 5 local activities."""

    @workflow.run
    async def run(self, calls: int) -> int:
        async def model_call(step: int) -> int:
            return await workflow.execute_activity(
                bench_noop, step, task_queue="bench-floor-pool", start_to_close_timeout=NOOP_TIMEOUT
            )

        return await _agent(calls, model_call)


@workflow.defn(name="BenchLocalShapeChild")
class LocalShapeChild:
    """The same shape had model calls been local activities too: 19 local activities."""

    @workflow.run
    async def run(self, calls: int) -> int:
        async def model_call(step: int) -> int:
            return await workflow.execute_local_activity(
                bench_noop, step, start_to_close_timeout=NOOP_TIMEOUT
            )

        return await _agent(calls, model_call)


SHAPES = {"floor": FloorChild.run, "shape": ShapeChild.run, "local_shape": LocalShapeChild.run}


@workflow.defn(name="BenchFloorParent")
class FloorParent:
    @workflow.run
    async def run(self, children: int, shape: str = "floor") -> int:
        wid = workflow.info().workflow_id
        child = SHAPES[shape]
        done = await asyncio.gather(
            *(workflow.execute_child_workflow(child, 15, id=f"{wid}-{i}") for i in range(children))
        )
        return sum(done)


async def _noop_tool(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"ok": True}


async def dispatch(runs: int) -> dict[str, float]:
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
    async with embedded_stack(sim=sim, tools=tools) as stack:
        client: Client = stack.client
        async with (
            Worker(
                client,
                task_queue="bench-floor",
                workflows=[FloorParent, FloorChild, ShapeChild, LocalShapeChild],
                activities=[bench_noop],
                workflow_runner=UnsandboxedWorkflowRunner(),
                max_concurrent_local_activities=1000,
                max_concurrent_workflow_tasks=100,
            ),
            Worker(client, task_queue="bench-floor-pool", activities=[bench_noop]),
        ):
            for _ in range(runs):
                for shape in SHAPES:
                    t = time.perf_counter()
                    await client.execute_workflow(
                        FloorParent.run,
                        args=[100, shape],
                        id=str(uuid.uuid4()),
                        task_queue="bench-floor",
                    )
                    out[shape].append(time.perf_counter() - t)
                inp = load(
                    "quickstart", tools=["noop"], subagents={"maxConcurrent": 100, "maxSteps": 10}
                )
                t = time.perf_counter()
                result, _ = await run_job(stack, inp)
                out["platform"].append(time.perf_counter() - t)
                assert result.phase == "Succeeded", result.reason
                assert result.subagents_spawned == 100
    best = {k: min(v) for k, v in out.items()}
    return {
        "platform_seconds": best["platform"],
        "floor_seconds": best["floor"],
        "shape_floor_seconds": best["shape"],
        "local_shape_seconds": best["local_shape"],
        "local_shape_ratio": best["local_shape"] / best["floor"],
        "ratio": best["platform"] / best["floor"],
        "shape_ratio": best["platform"] / best["shape"],
    }


async def wide(time_scale: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with embedded_stack(sim=SimOptions(time_scale=time_scale)) as stack:
        swarm_inp = load("wide-search")
        swarm, _ = await run_job(stack, swarm_inp)
        out["swarm_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        events, size = await history_sizes(stack, swarm_inp)
        single, _ = await run_job(stack, load("wide-search", mode="single"))
    for r in (swarm, single):
        assert r.phase == "Succeeded", r.reason
    out.update(
        swarm={
            "criticalSteps": swarm.critical_steps,
            "totalSteps": swarm.total_steps,
            "wallSeconds": swarm.wall_seconds,
            "modelSeconds": swarm.model_seconds,
            "quality": swarm.quality,
        },
        single={
            "criticalSteps": single.critical_steps,
            "totalSteps": single.total_steps,
            "wallSeconds": single.wall_seconds,
            "modelSeconds": single.model_seconds,
            "quality": single.quality,
        },
        critical_steps_ratio=single.critical_steps / swarm.critical_steps,
        wall_ratio=single.wall_seconds / swarm.wall_seconds,
        max_history_events=events,
        max_history_bytes=size,
    )
    return out


async def overhead(time_scale: float) -> dict[str, Any]:
    async with embedded_stack(sim=SimOptions(time_scale=time_scale)) as stack:
        inp = load("wide-search")
        r, _ = await run_job(stack, inp)
        await stack.ledger.flush()
        calls = await stack.ledger.list_model_calls(inp.uid)
    assert r.phase == "Succeeded", r.reason
    step_seconds = sorted(
        c.model_seconds
        for c in calls
        if c.status == "ok" and c.model_seconds is not None and "/s" in c.agent_id
    )
    return {
        "time_scale": time_scale,
        "wallSeconds": r.wall_seconds,
        "modelSeconds": r.model_seconds,
        "subagent_step_model_seconds_p50": step_seconds[len(step_seconds) // 2],
        "ratio": r.wall_seconds / r.model_seconds,
        "total_steps": r.total_steps,
    }


async def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--time-scale", type=float, default=0.05)
    p.add_argument("--overhead-scale", type=float, default=0.5)
    p.add_argument("--dispatch-runs", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=[], choices=["wide", "overhead", "dispatch"])
    ns = p.parse_args()
    results: dict[str, Any] = {"event_loop": looping.loop_name()}
    print(f"event loop: {results['event_loop']} (KSWARM_EVENT_LOOP=asyncio for the standard one)")
    if "wide" not in ns.skip:
        w = results["wide"] = await wide(ns.time_scale)
        print(f"wide-search at time scale {ns.time_scale}:")
        print(
            "  criticalSteps single/swarm = "
            f"{w['single']['criticalSteps']}/{w['swarm']['criticalSteps']}"
            f" = {w['critical_steps_ratio']:.1f}x (target >= 4.5)"
        )
        print(
            "  wallSeconds   single/swarm = "
            f"{w['single']['wallSeconds']:.1f}/{w['swarm']['wallSeconds']:.1f}"
            f" = {w['wall_ratio']:.1f}x (target >= 4.5)"
        )
        print(f"  quality swarm {w['swarm']['quality']}, single {w['single']['quality']}")
        print(
            f"  largest history: {w['max_history_events']} events, "
            f"{w['max_history_bytes'] / 1e6:.2f} MB"
            " (targets < 10,240 and < 10 MB)"
        )
        print(
            f"  peak memory of the process (worker + simulator) with 100 sub-agents: "
            f"{w['swarm_peak_rss_mib']:.0f} MiB (target <= 1024)"
        )
    if "overhead" not in ns.skip:
        o = results["overhead"] = await overhead(ns.overhead_scale)
        print(
            f"orchestration overhead at time scale {ns.overhead_scale} (a sub-agent's model "
            f"step takes {o['subagent_step_model_seconds_p50']:.2f} s, median):"
        )
        print(
            f"  wallSeconds / modelSeconds = {o['wallSeconds']:.1f}/{o['modelSeconds']:.1f} = "
            f"{o['ratio']:.2f} (target <= 1.10)"
        )
    if "dispatch" not in ns.skip:
        d = results["dispatch"] = await dispatch(ns.dispatch_runs)
        print("dispatch, 100 sub-agents x 15 no-op tool calls:")
        print(
            f"  platform {d['platform_seconds']:.2f} s / raw floor {d['floor_seconds']:.2f} s = "
            f"{d['ratio']:.2f} (target <= 1.5)"
        )
        print(
            "  Temporal alone with the platform's shape (4 regular + 15 local activities per "
            f"child): {d['shape_floor_seconds']:.2f} s; platform / that = {d['shape_ratio']:.2f}"
        )
        print(
            "  Temporal alone, had model calls been local activities too (19 local activities "
            f"per child): {d['local_shape_seconds']:.2f} s = {d['local_shape_ratio']:.2f} x the "
            "raw floor, before any work"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "swarm.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(looping.run(main()))
