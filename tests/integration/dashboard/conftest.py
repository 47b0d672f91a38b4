"""Fixtures of the dashboard tests: a ledger filled by real runs, and the dashboard's pages
driven as Streamlit's own app tests and as a browser would load them.

One session ledger (SQLite) holds real jobs run on the Temporal dev server against the
simulated pool: the quickstart swarm, the same task with one agent (so the job page can compare
them), and a job that ran out of its tool-call budget (Failed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telemetry"))

from dashboard_support import FilledLedger
from telemetry_support import example, traced_stack

from kswarm.devserver import DevServer

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
