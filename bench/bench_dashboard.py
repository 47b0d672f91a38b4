"""Dashboard: how long the job page takes to render a 100-sub-agent, 1,500-tool-call job.

The job is a real wide-search run (100 sub-agents, about 1,500 searches) on the embedded stack
against the simulated pool, into a fresh SQLite ledger; or an existing job with ``--ledger URL
--job REF``. The page is rendered by Streamlit's AppTest through ``app.py``'s navigation, as
the server would run it: cold (every cached query dropped first: what a first viewer waits for)
and warm (within the cache's TTL). Target: cold render under 2 s.

    .venv/bin/python bench/bench_dashboard.py [--time-scale 0.01] [--ledger URL --job REF]

Prints the figures and writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from kswarm.embedded import SimOptions, embedded_stack
from kswarm.spec import parse_manifest
from kswarm.workflows import SwarmJobInput, SwarmWorkflow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
APP = str(ROOT / "dashboard" / "app.py")
TARGET_SECONDS = 2.0


async def run_wide_search(url: str, time_scale: float) -> str:
    doc = yaml.safe_load((ROOT / "examples" / "wide-search.yaml").read_text())
    doc["metadata"]["uid"] = uuid.uuid4().hex[:12]
    m = parse_manifest(doc)
    inp = SwarmJobInput(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec)
    async with embedded_stack(sim=SimOptions(time_scale=time_scale), database_url=url) as stack:
        result = await stack.client.execute_workflow(
            SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
        )
        await stack.ledger.flush()
    assert result.phase == "Succeeded", result.reason
    return str(inp.uid)


def render_job_page(uid: str, *, cold: bool) -> tuple[float, Any]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run()  # navigation registered
    at.switch_page("views/job.py")
    at.query_params["job"] = uid
    if cold:
        st.cache_data.clear()
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise RuntimeError([e.message for e in at.exception])
    return seconds, at


def main(ns: argparse.Namespace) -> dict[str, Any]:
    url = ns.ledger
    uid = ns.job
    if not url:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='kswarm-bench-dash-')) / 'ledger.db'}"
        print("running wide-search for the ledger ...", flush=True)
        uid = asyncio.run(run_wide_search(url, ns.time_scale))
    os.environ["KSWARM_DATABASE_URL"] = url
    from kswarm.dashboard import data

    jobs = data.jobs()
    named = jobs[(jobs["uid"] == uid) | (jobs["name"] == uid)]
    rows = data.job_rows(str(named["uid"].iloc[0])) if not named.empty else None
    if rows is None:
        raise SystemExit(f"no job {uid!r} in the ledger")
    uid = rows.job["uid"]
    subagents = sum(a["role"] == "subagent" for a in rows.agents)
    tools = sum((t.get("duration_seconds") or 0) > 0 for t in rows.tool_calls)
    render_job_page(uid, cold=True)  # imports and the first run of app.py, not measured
    cold = [render_job_page(uid, cold=True)[0] for _ in range(ns.repeat)]
    warm = [render_job_page(uid, cold=False)[0] for _ in range(ns.repeat)]
    return {
        "job": uid,
        "subagents": subagents,
        "tool_calls": tools,
        "model_calls": len(rows.model_calls),
        "cold_seconds": [round(s, 3) for s in cold],
        "warm_seconds": [round(s, 3) for s in warm],
        "cold_median_seconds": round(statistics.median(cold), 3),
        "warm_median_seconds": round(statistics.median(warm), 3),
        "target_seconds": TARGET_SECONDS,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--time-scale", type=float, default=0.01, help="simulator time scale")
    p.add_argument("--ledger", help="an existing ledger URL (with --job) instead of a new run")
    p.add_argument("--job", help="job uid or name in --ledger")
    p.add_argument("--repeat", type=int, default=3, help="renders per measurement (default 3)")
    out = main(p.parse_args())
    ok = out["cold_median_seconds"] < TARGET_SECONDS
    print(
        f"job page of a {out['subagents']}-sub-agent, {out['tool_calls']}-tool-call job: "
        f"{out['cold_median_seconds']:.2f} s cold, {out['warm_median_seconds']:.2f} s warm "
        f"(target < {TARGET_SECONDS:g} s: {'met' if ok else 'NOT met'})"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard.json").write_text(json.dumps(out, indent=2) + "\n")
