"""Prefix-affinity routing against round-robin, on a simulated pool of 4 replicas.

A swarm's agents share long prompt prefixes: every agent of a job starts from the job's system
prompt and tool definitions, and each agent's own conversation grows call after call. vLLM's
prefix cache skips the prefill of a prefix it has already seen, but only on the replica that saw
it. This runs the same workload under both policies against fresh simulated replicas (in their
own process): 100 agents in 10 jobs, each job with a 6,000-token system prompt, each agent making
4 streamed calls with a 2,000-token tool result between them; ``prefix_key`` is
``job-J/agent-A`` by default (see ``kswarm.llm.router.rendezvous_order``). Two
arrival patterns: ``burst`` (all 100 agents start at once, fixed 0.5 s tools: every round is a
100-way burst) and ``staggered`` (a job starts every 2 s, tools take 0.2 to 2 s). It prints, per
pattern,

* p90 time to first token, prefix-affinity / round-robin (target <= 0.5),
* throughput (calls per second), prefix-affinity / round-robin (target >= 1.0),
* calls served by the busiest replica / the mean, under prefix-affinity (target <= 1.5).

    python bench/bench_router.py [--key job/agent|job|agent] [--time-scale 1.0] [--rounds 4]
                                 [--scenario burst|staggered] [--bound-factor 1.25]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kswarm.devserver import free_ports
from kswarm.embedded import wait_healthy
from kswarm.llm import ChatRequest, LLMClient, PoolConfig, RetryPolicy, SimConfig
from kswarm.llm.replicas import RouterSettings

RESULTS = Path(__file__).resolve().parent / "results"
REPLICAS = 4
JOBS = 10
AGENTS_PER_JOB = 10
SYSTEM_TOKENS = 6000
TASK_TOKENS = 300
TOOL_RESULT_TOKENS = 2000


@dataclass(frozen=True)
class Scenario:
    name: str
    job_interval_seconds: float
    """Modelled seconds between the starts of two jobs (0: all at once)."""
    tool_seconds: tuple[float, float]
    """Range of the modelled time a tool call takes (scaled like the simulator)."""


SCENARIOS = (Scenario("burst", 0.0, (0.5, 0.5)), Scenario("staggered", 2.0, (0.2, 2.0)))
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the corpus.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]


def agent_behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Search (100-200 output tokens) until the conversation has three tool results, then answer."""
    tokens = rng.randint(100, 200)
    if sum(m.get("role") == "tool" for m in body["messages"]) >= 3:
        return {"role": "assistant", "content": "done", "kswarm_output_tokens": tokens}
    query = f"q{rng.getrandbits(32)}"
    call = {
        "type": "function",
        "function": {"name": "search", "arguments": json.dumps({"query": query})},
    }
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [call],
        "kswarm_output_tokens": tokens,
    }


def serve(port: int, time_scale: float, gpu_blocks: int) -> None:
    from kswarm.llm import simulator
    from kswarm.llm.sim_config import SimConfig

    config = SimConfig(time_scale=time_scale, behaviour=agent_behaviour, num_gpu_blocks=gpu_blocks)
    asyncio.run(simulator.serve(port, config, replicas=REPLICAS))


def text(tokens: int, seed: str) -> str:
    rng = random.Random(seed)
    words = []
    while len(words) * 5 < tokens * 4:
        words.append(f"{rng.getrandbits(16):04x}")
    return " ".join(words)[: tokens * 4]


def routing_key(kind: str, job: int, index: int) -> str:
    """``job``: one key per job; ``agent``: one per agent; ``job/agent``: a group key (a job
    spread over two replicas, each agent sticking to one of them)."""
    return {"job": f"job-{job}", "agent": f"job-{job}-agent-{index}"}.get(
        kind, f"job-{job}/agent-{index}"
    )


async def agent(
    client: LLMClient,
    pool: PoolConfig,
    key: str,
    scenario: Scenario,
    job: int,
    index: int,
    rounds: int,
    scale: float,
) -> list[dict[str, Any]]:
    pace = random.Random(f"pace-{job}-{index}")  # the same tool latencies under both policies
    await asyncio.sleep(job * scenario.job_interval_seconds * scale)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": text(SYSTEM_TOKENS, f"job-{job}")},
        {"role": "user", "content": text(TASK_TOKENS, f"task-{job}-{index}")},
    ]
    calls = []
    retry = RetryPolicy(initial_interval=0.05)
    for r in range(rounds):
        request = ChatRequest(
            messages=messages, tools=TOOLS, stream=True, prefix_key=routing_key(key, job, index)
        )
        result = await client.chat(pool, request, retry=retry)
        calls.append(
            {
                "ttft": result.ttft_seconds,
                "replica": result.replica,
                "input": result.input_tokens,
                "cached": result.cached_tokens,
            }
        )
        messages.append(result.message)
        for call in result.tool_calls:
            await asyncio.sleep(pace.uniform(*scenario.tool_seconds) * scale)
            result_text = text(TOOL_RESULT_TOKENS, f"result-{job}-{index}-{r}")
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result_text})
        if not result.tool_calls:
            messages.append({"role": "user", "content": "Go on."})
    return calls


async def run_policy(
    urls: list[str],
    policy: str,
    key: str,
    scenario: Scenario,
    rounds: int,
    scale: float,
    settings: RouterSettings,
) -> dict[str, Any]:
    pool = PoolConfig(name="bench", model="kswarm-sim", replicas=tuple(urls), router=policy)
    client = LLMClient(router_settings=settings)
    t0 = time.perf_counter()
    per_agent = await asyncio.gather(
        *(
            agent(client, pool, key, scenario, job, index, rounds, scale)
            for job in range(JOBS)
            for index in range(AGENTS_PER_JOB)
        )
    )
    makespan = time.perf_counter() - t0
    await client.aclose()
    calls = [c for agent_calls in per_agent for c in agent_calls]
    ttfts = sorted(c["ttft"] for c in calls if c["ttft"] is not None)
    served = collections.Counter(c["replica"] for c in calls)
    return {
        "policy": policy,
        "calls": len(calls),
        "makespan_seconds": makespan,
        "throughput_calls_per_second": len(calls) / makespan,
        "ttft_p50_seconds": ttfts[len(ttfts) // 2],
        "ttft_p90_seconds": ttfts[int(0.9 * len(ttfts))],
        "cache_hit_rate": sum(c["cached"] for c in calls) / sum(c["input"] for c in calls),
        "served_per_replica": [served.get(u, 0) for u in urls],
        "max_over_mean_load": max(served.values()) / (len(calls) / len(urls)),
    }


def measure(
    policy: str,
    key: str,
    scenario: Scenario,
    rounds: int,
    scale: float,
    gpu_blocks: int,
    settings: RouterSettings,
) -> dict[str, Any]:
    base = free_ports(REPLICAS)
    urls = [f"http://127.0.0.1:{base + i}" for i in range(REPLICAS)]
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(base),
            "--time-scale",
            str(scale),
            "--gpu-blocks",
            str(gpu_blocks),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_healthy(urls))
        return asyncio.run(run_policy(urls, policy, key, scenario, rounds, scale, settings))
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--key", choices=("job/agent", "job", "agent"), default="job/agent")
    parser.add_argument("--gpu-blocks", type=int, default=SimConfig().num_gpu_blocks)
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS], default=None)
    parser.add_argument(
        "--bound-factor", type=float, default=RouterSettings().bound_factor, help="bounded load c"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        serve(ns.serve, ns.time_scale, ns.gpu_blocks)
        return 0
    targets = {
        "ttft_p90_ratio": ("<=", 0.5),
        "throughput_ratio": (">=", 1.0),
        "max_over_mean_load": ("<=", 1.5),
    }
    results = []
    settings = RouterSettings(bound_factor=ns.bound_factor)
    for scenario in SCENARIOS:
        if ns.scenario and scenario.name != ns.scenario:
            continue
        args = (ns.key, scenario, ns.rounds, ns.time_scale, ns.gpu_blocks, settings)
        affinity = measure("prefix-affinity", *args)
        robin = measure("round-robin", *args)
        figures = {
            "ttft_p90_ratio": affinity["ttft_p90_seconds"] / robin["ttft_p90_seconds"],
            "throughput_ratio": affinity["throughput_calls_per_second"]
            / robin["throughput_calls_per_second"],
            "max_over_mean_load": affinity["max_over_mean_load"],
        }
        results.append({"scenario": scenario.name, "figures": figures, "runs": [affinity, robin]})
        print(f"{scenario.name}:")
        for run in (affinity, robin):
            print(
                f"  {run['policy']:>15}: {run['calls']} calls in {run['makespan_seconds']:.1f} s "
                f"({run['throughput_calls_per_second']:.1f}/s), TTFT p50 "
                f"{run['ttft_p50_seconds'] * 1000:.0f} ms p90 "
                f"{run['ttft_p90_seconds'] * 1000:.0f} ms, prefix-cache hits "
                f"{run['cache_hit_rate']:.0%}, calls per replica {run['served_per_replica']}"
            )
        for name, value in figures.items():
            op, target = targets[name]
            met = value <= target if op == "<=" else value >= target
            print(f"  {name}: {value:.2f} (target {op} {target}: {'met' if met else 'NOT MET'})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_router.json"
    document = {
        "time_scale": ns.time_scale,
        "rounds": ns.rounds,
        "gpu_blocks": ns.gpu_blocks,
        "prefix_key": ns.key,
        "bound_factor": ns.bound_factor,
        "targets": targets,
        "scenarios": results,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote bench/results/{out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
