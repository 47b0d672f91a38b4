"""What a waiting approval adds to a tool call beyond the person's own delay.

Two single-agent jobs, side by side on one embedded stack (Temporal dev server, simulated pool,
``mcp-server-time`` over stdio twice: ``plain`` and ``gated``, whose ``get_current_time``
requires approval). Each job's agent makes one call and answers:

* ``plain``: the call runs at once;
* ``gated``: the call waits; this script watches the agent's ``waiting_for_approval`` query
  (every 5 ms, as a person watching the dashboard would, only faster) and approves at once
  through :func:`kswarm.approving.send`, the code ``kswarm approve`` and the dashboard's
  Approve button run.

The person's delay is the time from the first sight of the waiting call to the decision sent
(here a few ms: the query's round trip and a Temporal connection). What approval adds is
``gated wall - plain wall - person's delay``: the ``await_approval`` ledger write, the signal's
trip to the workflow, the ``decide_tool_call`` ledger write and the extra workflow tasks. Jobs
alternate (plain, gated, gated, plain, ...) so drift of the machine hits both alike.

    python -P bench/bench_approval.py [--rounds 10]

Prints medians and writes bench/results/approval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kswarm.approving import send
from kswarm.config import Settings
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.approvals import ToolCallDecision

RESULTS = Path(__file__).resolve().parent / "results"
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")


def one_call(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The agent calls the one tool it is offered, then answers with what it said."""
    messages = body.get("messages") or []
    if any(m.get("role") == "assistant" for m in messages):
        said = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
        return {"role": "assistant", "content": "\n".join(said), "tool_calls": []}
    (tool,) = [t["function"]["name"] for t in body.get("tools") or []]
    call = {"name": tool, "arguments": json.dumps({"timezone": "UTC"})}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c0", "type": "function", "function": call}],
    }


def manifest(uid: str, tool: str) -> dict[str, Any]:
    return {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "SwarmJob",
        "metadata": {"name": "approval-bench", "uid": uid},
        "spec": {"task": "what time is it?", "tools": [tool], "mode": "single"},
    }


async def run_job(stack: Any, uid: str, gated: bool, settings: Settings) -> dict[str, float]:
    tool = "gated__get_current_time" if gated else "plain__get_current_time"
    inp = SwarmJobInput.from_manifest(manifest(uid, tool))
    started = time.perf_counter()
    handle = await stack.client.start_workflow(
        SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
    )
    delay = 0.0
    if gated:
        waiting: list[str] = []
        for _ in range(6000):  # 30 s at most
            waiting = await handle.query("waiting_for_approval")
            if waiting:
                break
            await asyncio.sleep(0.005)
        seen = time.perf_counter()
        (call,) = waiting
        await send(uid, call, ToolCallDecision(call, True, "bench"), settings)
        delay = time.perf_counter() - seen
    result = await handle.result()
    wall = time.perf_counter() - started
    if result.phase != "Succeeded":
        raise RuntimeError(f"{uid}: {result.phase}: {result.reason}")
    return {"wall": wall, "delay": delay}


async def main(rounds: int) -> dict[str, Any]:
    os.environ.setdefault("KSWARM_HOME", tempfile.mkdtemp(prefix="kswarm-bench-approval-"))
    servers = [
        ToolServerConfig(name="plain", command=TIME_SERVER),
        ToolServerConfig(name="gated", command=TIME_SERVER, require_approval=("get_current_time",)),
    ]
    sim = SimOptions(time_scale=0.005, extra={"behaviour": one_call})
    plain: list[dict[str, float]] = []
    gated: list[dict[str, float]] = []
    async with tool_servers(servers) as connected:
        tools = connected.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            settings = dataclasses.replace(
                Settings.from_env(), temporal_address=stack.server.address
            )
            for warm in range(2):  # sessions, caches and the workers' first tasks
                await run_job(stack, f"warm-p{warm}", False, settings)
                await run_job(stack, f"warm-g{warm}", True, settings)
            for i in range(rounds):
                order = (False, True) if i % 2 == 0 else (True, False)
                for is_gated in order:
                    kind = "g" if is_gated else "p"
                    out = await run_job(stack, f"r{i}-{kind}", is_gated, settings)
                    (gated if is_gated else plain).append(out)
    plain_wall = statistics.median(r["wall"] for r in plain)
    gated_wall = statistics.median(r["wall"] for r in gated)
    delay = statistics.median(r["delay"] for r in gated)
    added = [r["wall"] - r["delay"] - plain_wall for r in gated]
    return {
        "rounds": rounds,
        "plain_wall_median_s": round(plain_wall, 4),
        "gated_wall_median_s": round(gated_wall, 4),
        "person_delay_median_s": round(delay, 4),
        "added_by_approval_median_s": round(statistics.median(added), 4),
        "added_by_approval_s": [round(a, 4) for a in added],
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="jobs of each kind (default 10)")
    ns = p.parse_args()
    out = asyncio.run(main(ns.rounds))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "approval.json").write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"one MCP call, single agent, median of {out['rounds']}: "
        f"{out['plain_wall_median_s'] * 1000:.0f} ms without approval, "
        f"{out['gated_wall_median_s'] * 1000:.0f} ms with it, of which the person's delay "
        f"{out['person_delay_median_s'] * 1000:.0f} ms; approval adds "
        f"{out['added_by_approval_median_s'] * 1000:.0f} ms beyond the person's delay"
    )
