"""What a human approval adds to a tool call beyond the human's own delay.

One agent (mode ``single``) makes one call of ``get_current_time`` on ``mcp-server-time`` (a
reference MCP server, over stdio), on the embedded stack (Temporal dev server, SQLite ledger,
simulated model). Each repeat runs the job twice, in alternating order:

* ``plain``: the tool as it is;
* ``approval``: the job marks it ``requireApproval``; an approver that answers at once polls the
  agent's ``waiting_for_approval`` query every 5 ms and, as soon as the call shows, sends the
  ``decide_tool_call`` signal (what ``kswarm approve`` and the operator's annotation handler
  send).

Per run, from the ledger (the worker's clock, this process's) and the approver's own marks:

* ``dispatch``: model step recorded -> tool call started (the call's ``finished_at`` less its
  ``duration_seconds``);
* ``seen``: step recorded -> the approver sees the call waiting (``await_approval`` writes the
  ledger row ``awaiting``, the query answers);
* ``human``: the approver's own delay, seen -> signal sent (near 0 here: it answers at once);
* ``signal->start`` and ``signal->finish``: signal sent -> the call starts / is stored;
* ``added``: what the approval adds beyond the human's delay, the approval run's dispatch less
  ``human`` less the plain run's dispatch;
* the job's wall time, and its ratio approval / plain.

    python -P bench/bench_approval.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kswarm.approving import decide
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig
from kswarm.workflows import SwarmJobInput, SwarmWorkflow
from kswarm.workflows.approvals import ToolCallDecision

RESULTS = Path(__file__).resolve().parent / "results"
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
TOOL = "time__get_current_time"
POLL_SECONDS = 0.005


def call_the_clock(body: dict[str, Any], rng: Any) -> dict[str, Any]:
    """A simulated agent: one call of the clock, then an answer with what it said."""
    messages = body.get("messages") or []
    if not any(m.get("role") == "assistant" for m in messages):
        call = {
            "id": "c0",
            "type": "function",
            "function": {"name": TOOL, "arguments": json.dumps({"timezone": "UTC"})},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    said = [str(m.get("content")) for m in messages if m.get("role") == "tool"]
    return {"role": "assistant", "content": "\n".join(said), "tool_calls": []}


def manifest(uid: str, approval: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"task": "What time is it?", "mode": "single", "tools": ["time__*"]}
    if approval:
        spec["requireApproval"] = [TOOL]
    return {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "SwarmJob",
        "metadata": {"name": "clock", "uid": uid},
        "spec": spec,
    }


def ms(delta: float) -> float:
    return round(delta * 1000, 2)


async def run_job(stack: Any, uid: str, approval: bool) -> dict[str, float]:
    inp = SwarmJobInput.from_manifest(manifest(uid, approval))
    started = time.perf_counter()
    handle = await stack.client.start_workflow(
        SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
    )
    marks: dict[str, datetime] = {}
    if approval:
        # A person watching the job: polls, answers at once.
        while not (waiting := await handle.query("waiting_for_approval")):  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        marks["seen"] = datetime.now(UTC)
        call = waiting[0]
        decision = ToolCallDecision(call, True, "bench")
        marks["signal"] = datetime.now(UTC)
        await decide(stack.client, uid, call, decision)
    result = await handle.result()
    wall = time.perf_counter() - started
    if result.phase != "Succeeded":
        raise RuntimeError(f"job {uid} ended {result.phase}: {result.reason}")
    await stack.ledger.flush()
    (row,) = [r for r in await stack.ledger.list_tool_calls(uid) if r.tool == TOOL]
    if row.status != "succeeded" or row.finished_at is None:
        raise RuntimeError(f"the call of {uid} is {row.status}: {row.error}")
    finished = row.finished_at.replace(tzinfo=row.finished_at.tzinfo or UTC)
    recorded = row.started_at.replace(tzinfo=row.started_at.tzinfo or UTC)
    start = finished.timestamp() - float(row.duration_seconds or 0.0)
    out = {"wall": ms(wall), "dispatch": ms(start - recorded.timestamp())}
    out["call"] = ms(float(row.duration_seconds or 0.0))
    if approval:
        seen, signal = marks["seen"].timestamp(), marks["signal"].timestamp()
        out["seen"] = ms(seen - recorded.timestamp())
        out["human"] = ms(signal - seen)
        out["signal->start"] = ms(start - signal)
        out["signal->finish"] = ms(finished.timestamp() - signal)
    return out


async def bench(repeats: int) -> dict[str, Any]:
    server = ToolServerConfig(name="time", command=str(TIME_SERVER))
    sim = SimOptions(time_scale=0.001, extra={"behaviour": call_the_clock})
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "approval": []}
    tag = f"{int(time.time())}"
    async with tool_servers([server]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools) as stack:
            await run_job(stack, f"warm-{tag}", False)  # connections, caches, first workflow
            await run_job(stack, f"warm-a-{tag}", True)
            for i in range(repeats):
                order = (False, True) if i % 2 == 0 else (True, False)
                for approval in order:
                    kind = "approval" if approval else "plain"
                    runs[kind].append(await run_job(stack, f"{kind}-{i}-{tag}", approval))
    return runs


def summary(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    def med(kind: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[kind]))

    plain_dispatch = med("plain", "dispatch")
    added = [r["dispatch"] - r["human"] - plain_dispatch for r in runs["approval"]]
    return {
        "plain dispatch ms": plain_dispatch,
        "approval seen ms": med("approval", "seen"),
        "approval human ms": med("approval", "human"),
        "signal->start ms": med("approval", "signal->start"),
        "signal->finish ms": med("approval", "signal->finish"),
        "call ms (plain, approval)": [med("plain", "call"), med("approval", "call")],
        "added beyond the human ms": round(float(statistics.median(added)), 2),
        "added min..max ms": [round(min(added), 2), round(max(added), 2)],
        "wall ms (plain, approval)": [med("plain", "wall"), med("approval", "wall")],
        "wall ratio approval/plain": round(med("approval", "wall") / med("plain", "wall"), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    ns = p.parse_args()
    if not TIME_SERVER.exists():
        print(f"mcp-server-time is not installed beside {sys.executable}", file=sys.stderr)
        return 2
    runs = asyncio.run(bench(ns.repeats))
    cols = ["wall", "dispatch", "call", "seen", "human", "signal->start", "signal->finish"]
    print(f"{'run':10} " + " ".join(f"{c + ' ms':>17}" for c in cols))
    for kind, rows in runs.items():
        for i, r in enumerate(rows):
            cells = " ".join(f"{r[c]:17.2f}" if c in r else f"{'-':>17}" for c in cols)
            print(f"{kind + str(i):10} {cells}")
    figures = summary(runs)
    for k, v in figures.items():
        print(f"{k:30} {v}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_approval.json"
    out.write_text(json.dumps({"runs": runs, "summary": figures}, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
