"""Rollout benchmarks, each measured side by side in one run on the embedded stack (simulator).

1. Group concurrency: a group of 8 quickstart samples against a group of one, on one pool:
   wallSeconds(8) / wallSeconds(1) (target <= 1.5).
2. Swarm against serial collapse: groups of wide-search samples with the simulator's ``swarm``
   and ``serial`` orchestrator profiles, without and with a critical-steps budget (twice the
   swarm's critical steps). Each group runs once; its samples' recorded outcomes are scored at
   every epoch of the λ schedule (the reward is a function of the trajectory and the epoch).
   Expected: equal Q, a higher R for swarm wherever λ_aux > 0, equal R at λ_aux = 0 without the
   budget and a higher R for swarm with it, fewer critical steps for swarm.
3. Export of a 100-sub-agent job (the wide-search swarm sample) to ATIF v1.8: seconds to build,
   validate and serialise it (target < 2 s).

    .venv/bin/python -P bench/bench_rollouts.py [--group-time-scale 1] [--time-scale 0.02]
        [--samples 2] [--epochs 3]

Prints the figures and writes bench/results/rollouts.json.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from kswarm import looping
from kswarm.embedded import EmbeddedStack, SimOptions, embedded_stack
from kswarm.rollouts import LambdaSchedule
from kswarm.rollouts.groups import outcome_from_report, score_group
from kswarm.rollouts.trajectories import job_trajectory
from kswarm.sim import demo_tools
from kswarm.spec import parse_manifest
from kswarm.workflows import RolloutInput, RolloutResult, RolloutWorkflow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def group_input(name: str, samples: int, **spec: Any) -> RolloutInput:
    doc = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    doc["metadata"]["uid"] = uuid.uuid4().hex[:12]
    for key, value in spec.items():
        doc["spec"].setdefault(key, {}).update(value)
    m = parse_manifest(doc)
    return RolloutInput(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec, samples=samples)


async def run_group(stack: EmbeddedStack, inp: RolloutInput) -> tuple[RolloutResult, float]:
    start = time.perf_counter()
    result = await stack.client.execute_workflow(
        RolloutWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
    )
    return result, time.perf_counter() - start


async def concurrency(stack: EmbeddedStack) -> dict[str, Any]:
    await run_group(stack, group_input("quickstart", 1))  # warm the worker and the pool
    _, one = await run_group(stack, group_input("quickstart", 1))
    _, eight = await run_group(stack, group_input("quickstart", 8))
    return {"oneSampleSeconds": one, "eightSamplesSeconds": eight, "ratio": eight / one}


async def profiles(stack: EmbeddedStack, samples: int, epochs: int) -> dict[str, Any]:
    runs: dict[str, RolloutResult] = {}
    for profile in ("swarm", "serial"):
        inp = group_input("wide-search", samples, orchestrator={"profile": profile})
        runs[profile], _ = await run_group(stack, inp)
    budget = 2 * max(s.critical_steps for s in runs["swarm"].samples)
    for profile in ("swarm", "serial"):
        inp = group_input(
            "wide-search",
            samples,
            orchestrator={"profile": profile},
            limits={"maxCriticalSteps": budget},
        )
        runs[f"{profile}+budget"], _ = await run_group(stack, inp)
    schedule = LambdaSchedule()
    rows = []
    for label, result in runs.items():
        jobs = [await stack.ledger.get_job(s.uid) for s in result.samples]
        outcomes = [
            outcome_from_report(j.phase, j.quality, j.critical_steps, j.report)
            for j in jobs
            if j is not None
        ]
        for epoch in range(epochs):
            terms = score_group(outcomes, epoch=epoch, epochs=epochs, schedule=schedule)
            rows.append(
                {
                    "run": label,
                    "epoch": epoch,
                    "lambda": schedule.at(epoch, epochs),
                    "R": sum(t.reward for t in terms) / len(terms),
                    "Q": sum(t.quality for t in terms) / len(terms),
                    "success": sum(t.success for t in terms) / len(terms),
                    "r_parallel": sum(t.r_parallel for t in terms) / len(terms),
                    "criticalSteps": sum(o.critical_steps for o in outcomes) / len(outcomes),
                    "collapse": sum(s.serial_collapse for s in result.samples),
                }
            )
    return {"budget": budget, "rows": rows, "swarmJob": runs["swarm"].samples[0].uid}


async def export(stack: EmbeddedStack, uid: str) -> dict[str, Any]:
    start = time.perf_counter()
    trajectory = await job_trajectory(stack.ledger, uid, tool_specs=demo_tools().openai_specs)
    text = json.dumps(trajectory.to_json_dict())
    seconds = time.perf_counter() - start
    return {
        "subagents": len(trajectory.subagent_trajectories or []),
        "seconds": seconds,
        "bytes": len(text),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    async with embedded_stack(sim=SimOptions(time_scale=args.group_time_scale)) as stack:
        c = await concurrency(stack)
    print(
        f"group of 8 quickstart samples: {c['eightSamplesSeconds']:.2f} s, one sample: "
        f"{c['oneSampleSeconds']:.2f} s, ratio {c['ratio']:.2f} (target <= 1.5; time scale "
        f"{args.group_time_scale})"
    )
    async with embedded_stack(sim=SimOptions(time_scale=args.time_scale)) as stack:
        p = await profiles(stack, args.samples, args.epochs)
        print(f"\nwide-search, {args.samples} samples per group; budget = {p['budget']} steps")
        print(
            f"{'run':<14}{'epoch':>6}{'λ_aux':>7}{'R':>8}{'Q':>7}{'success':>9}"
            f"{'r_par':>7}{'crit. steps':>13}{'collapse':>10}"
        )
        for r in p["rows"]:
            print(
                f"{r['run']:<14}{r['epoch']:>6}{r['lambda']:>7.3f}{r['R']:>8.4f}{r['Q']:>7.3f}"
                f"{r['success']:>9.2f}{r['r_parallel']:>7.3f}{r['criticalSteps']:>13.1f}"
                f"{r['collapse']:>10}"
            )
        e = await export(stack, p["swarmJob"])
        print(
            f"\nATIF export of a {e['subagents']}-sub-agent job: {e['seconds']:.2f} s, "
            f"{e['bytes'] / 1e6:.1f} MB (target < 2 s)"
        )
    return {"concurrency": c, "profiles": p, "export": e}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--group-time-scale",
        type=float,
        default=1.0,
        help="simulator time scale of the group-of-8 run (model time, not this machine's CPU, "
        "should dominate it, as on GPUs)",
    )
    parser.add_argument(
        "--time-scale", type=float, default=0.02, help="simulator time scale of the rest"
    )
    parser.add_argument("--samples", type=int, default=2, help="samples per wide-search group")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the λ schedule")
    results = looping.run(main(parser.parse_args()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rollouts.json").write_text(json.dumps(results, indent=2))
