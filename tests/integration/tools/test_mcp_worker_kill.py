"""A worker killed during a side-effecting MCP call: the call runs again with the same key, and
the server sees that key twice (so a server that keeps its own record of keys can answer the
second time without doing it again); the ledger has the call once, succeeded, on its second
attempt. ``kswarm worker`` runs as a process of its own, with its tools file, as in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from mcp_behaviours import call_named_tools
from mcp_support import HERE, ledger_server, read_journal
from temporalio.client import Client

from kswarm.devserver import DevServer, start_dev_server
from kswarm.ledger import Ledger
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.tools.servers import server_entry
from kswarm.workflows import SwarmJobInput, SwarmWorkflow

KSWARM = str(Path(sys.executable).parent / "kswarm")
REPO = HERE.parents[2]


@pytest.fixture
async def temporal(tmp_path: Path) -> AsyncIterator[DevServer]:
    async with start_dev_server(tmp_path / "temporal") as server:
        yield server


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [KSWARM, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )


async def test_a_call_cut_by_a_worker_kill_runs_again_with_the_same_key(
    temporal: DevServer, tmp_path: Path, journal: Path
) -> None:
    sims = await start_replicas(1, SimConfig(time_scale=0.001, behaviour=call_named_tools))
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        yaml.safe_dump(
            {"pools": [{"name": "mcp", "model": SimConfig().model, "replicas": [sims[0].url]}]}
        )
    )
    tools = tmp_path / "tools.yaml"
    tools.write_text(yaml.safe_dump({"servers": [server_entry(ledger_server(journal))]}))
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {
        **os.environ,
        "KSWARM_HOME": str(tmp_path / "home"),
        "KSWARM_TEMPORAL_ADDRESS": temporal.address,
        "KSWARM_DATABASE_URL": db,
        "KSWARM_POOLS_FILE": str(pools),
        "KSWARM_TOOLS_FILE": str(tools),
    }
    manifest = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "SwarmJob",
        "metadata": {"name": "kill", "uid": "mcpkill1"},
        "spec": {
            "task": 'CALL led__slow {"seconds": 3}',
            "mode": "single",
            "tools": ["led__*"],
            "orchestrator": {"pool": "mcp"},
            "subagents": {"pool": "mcp"},
        },
    }
    inp = SwarmJobInput.from_manifest(manifest)
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        client = await Client.connect(temporal.address)
        handle = await client.start_workflow(
            SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue="kswarm"
        )
        for _ in range(600):  # until the server has the call in hand
            if read_journal(journal):
                break
            await asyncio.sleep(0.05)
        assert read_journal(journal), log.read_text()[-3000:]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(env, log)
        result = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        await stop_replicas(sims)
    assert result.phase == "Succeeded", (result.reason, log.read_text()[-3000:])
    ledger = await Ledger.connect(db)
    try:
        (row,) = await ledger.list_tool_calls("mcpkill1")
    finally:
        await ledger.close()
    calls = [e["key"] for e in read_journal(journal) if e["event"] == "call"]
    assert calls == [row.key, row.key]
    assert row.status == "succeeded" and row.attempts == 2
