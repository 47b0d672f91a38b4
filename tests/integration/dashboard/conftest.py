"""Fixtures of the dashboard tests: a ledger filled by real runs, and the dashboard's pages
driven as Streamlit's own app tests and as a browser would load them.

One session ledger (SQLite) holds real jobs run on the Temporal dev server against the
simulated pool: the quickstart swarm, the same task with one agent (so the job page can compare
them), and a job that ran out of its tool-call budget (Failed). A second ledger (``mcp_ledger``)
holds a job whose agent called the tools of real MCP servers (``mcp-server-time`` and
``mcp-server-git``), for the Tool servers page.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from dashboard_support import FilledLedger, McpLedger
from mcp_behaviours import call_named_tools
from mcp_support import git_server, job_manifest, time_server
from telemetry_support import example, traced_stack

from kswarm.devserver import DevServer
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.workflows import SwarmJobInput, SwarmWorkflow

REPO = Path(__file__).resolve().parents[3]
OUTPUT = REPO / "test-output" / "dashboard"


@pytest.fixture(scope="session")
async def filled_ledger(
    temporal: DevServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FilledLedger]:
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    async with traced_stack(temporal.address, tmp, ledger_url=url) as stack:
        quick = example("quickstart")
        jobs = {
            "swarm": stack.job(quick),
            "single": stack.job(quick, mode="single"),
            "failed": stack.job(quick, limits__maxToolCalls=6),
        }
        results = {kind: await stack.run(inp) for kind, inp in jobs.items()}
        await stack.ledger.flush()
    assert results["swarm"].phase == results["single"].phase == "Succeeded"
    assert results["failed"].phase == "Failed", results["failed"]
    yield FilledLedger(
        url=url,
        **{kind: inp.uid for kind, inp in jobs.items()},
        critical_steps={inp.uid: results[k].critical_steps for k, inp in jobs.items()},
        stages={inp.uid: len(results[k].stages) for k, inp in jobs.items()},
    )


def _git_repo(path: Path) -> Path:
    """A repository with one commit, made by git itself."""
    path.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    (path / "README").write_text("hello\n")
    for args in (["init", "-q", "-b", "main"], ["add", "README"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


@pytest.fixture(scope="session")
async def mcp_ledger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[McpLedger]:
    """A ledger with one real job on the embedded stack whose single agent called real MCP
    tools: two read-only calls of ``time`` (one answered with ``isError``: failed) and git's
    ``git_status`` (read-only) and ``git_reset`` (destructive); and a tool no server offers."""
    tmp = tmp_path_factory.mktemp("dashboard-mcp")
    url = f"sqlite:///{tmp / 'ledger.db'}"
    repo = {"repo_path": str(_git_repo(tmp / "repo"))}
    calls = [
        ("time__get_current_time", {"timezone": "UTC"}),
        ("time__get_current_time", {"timezone": "Nowhere/Atlantis"}),
        ("git__git_status", repo),
        ("git__git_reset", repo),
        ("nope__invented", {}),  # no server offers it: refused, and no server's call
    ]
    manifest = job_manifest("dashmcp", calls, ["time__*", "git__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KSWARM_HOME", str(tmp / "home"))
        async with tool_servers([time_server(), git_server(tmp / "repo")]) as servers:
            tools = servers.register(demo_tools())
            async with embedded_stack(sim=sim, tools=tools, database_url=url) as stack:
                inp = SwarmJobInput.from_manifest(manifest)
                result = await stack.client.execute_workflow(
                    SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
                )
                await stack.ledger.flush()
    assert result.phase == "Succeeded", result.reason
    yield McpLedger(url=url, uid="dashmcp")


@pytest.fixture
def ledger_env(filled_ledger: FilledLedger, monkeypatch: pytest.MonkeyPatch) -> FilledLedger:
    """The dashboard reads the filled ledger; its caches start empty."""
    import streamlit as st

    monkeypatch.setenv("KSWARM_DATABASE_URL", filled_ledger.url)
    st.cache_data.clear()
    return filled_ledger


@pytest.fixture(scope="session")
def output_dir() -> Iterator[Path]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    yield OUTPUT


os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
