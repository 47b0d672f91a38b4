"""A quickstart-sized job against the real llama.cpp server, through ``kswarm run --pools``.

The model is SmolLM2-135M: it will not answer well, and the test does not ask it to. It asserts
what the platform owes any model: the job ends in bounded time with a clear phase (and a
reason when it did not succeed), and every model call and tool call is in the ledger, with the
tokens the server itself counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from llamacpp_support import server_counter

from kswarm.ledger import Ledger
from kswarm.tools.control import STEERING_TOOLS

JOB = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "llama-quickstart"},
    "spec": {
        "task": (
            "For each company below find the city of its headquarters. Start one sub-agent "
            "per company with spawn_subagents, then call finish with the answers.\n"
            "Items:\n  - Vaskora Analytics\n  - Elstia Networks"
        ),
        "orchestrator": {"maxSteps": 3},
        "subagents": {"maxConcurrent": 2, "maxSteps": 2},
        "tools": ["search"],
        "limits": {"deadlineSeconds": 600, "maxToolCalls": 40},
        "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.5},
    },
}
WALL_LIMIT = 660.0
"""The deadline plus room to start and stop the embedded stack."""


def run_job(tmp_path: Path, url: str, pool: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    job_file, pools_file = tmp_path / "job.yaml", tmp_path / "pools.yaml"
    job_file.write_text(yaml.safe_dump(JOB))
    entry = {"name": "default", "model": "smollm2", "replicas": [url], **pool}
    pools_file.write_text(yaml.safe_dump({"pools": [entry]}))
    cmd = [sys.executable, "-P", "-m", "kswarm.cli", "run", str(job_file), "--json"]
    started = time.monotonic()
    done = subprocess.run(
        [*cmd, "--pools", str(pools_file)],
        capture_output=True,
        text=True,
        timeout=WALL_LIMIT,
        env={**os.environ, "KSWARM_HOME": str(tmp_path / "home")},
        check=False,
    )
    wall = time.monotonic() - started
    assert done.stdout.strip(), f"no report (exit {done.returncode}): {done.stderr[-3000:]}"
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), wall


async def test_a_small_job_on_a_real_model_ends_with_a_reason_and_a_complete_ledger(
    tmp_path: Path, llamacpp_url: str
) -> None:
    predicted_before = await server_counter(llamacpp_url, "llamacpp:tokens_predicted_total")
    pool = {"toolChoice": "required", "maxOutputTokens": 96, "maxConcurrency": 4}
    code, report, wall = await asyncio.to_thread(run_job, tmp_path, llamacpp_url, pool)
    predicted = await server_counter(llamacpp_url, "llamacpp:tokens_predicted_total")

    assert wall < WALL_LIMIT
    assert report["phase"] in ("Succeeded", "Failed"), report
    assert code == (0 if report["phase"] == "Succeeded" else 1)
    if report["phase"] != "Succeeded":
        assert report["reason"], report

    ledger = await Ledger.connect(f"sqlite:///{tmp_path / 'home' / 'ledger.db'}")
    try:
        calls = await ledger.list_model_calls(report["uid"])
        tools = await ledger.list_tool_calls(report["uid"])
        agents = await ledger.list_agents(report["uid"])
    finally:
        await ledger.close()
    answered = [c for c in calls if c.status == "ok"]
    # Every step is one answered model call; every answer's tokens are the server's own.
    assert len(answered) == report["totalSteps"] > 0
    assert all(c.input_tokens > 0 and c.output_tokens > 0 for c in answered)
    assert sum(c.output_tokens for c in answered) == predicted - predicted_before
    assert report["llmCalls"] == len(calls)
    assert report["tokens"] == {
        "input": sum(c.input_tokens for c in answered),
        "output": sum(c.output_tokens for c in answered),
    }
    # Every tool call the model made ended (ran, failed or was refused with a reason).
    assert all(t.status in ("succeeded", "failed", "refused") for t in tools), [
        (t.tool, t.status) for t in tools
    ]
    assert all(t.error for t in tools if t.status == "refused")
    ran = [t for t in tools if t.tool not in STEERING_TOOLS]
    assert report["toolCalls"]["total"] == len(ran)
    # Every sub-agent ended, with a status, and the report counts them.
    subagents = [a for a in agents if a.role == "subagent"]
    assert len(subagents) == report["subagents"]["spawned"]
    assert all(a.status in ("Succeeded", "Failed") for a in subagents)
    print(json.dumps({"wallSeconds": round(wall, 1), **report}, indent=1))
