"""Every page of the dashboard, driven with Streamlit's AppTest against a ledger of real runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from dashboard_support import FilledLedger
from streamlit.testing.v1 import AppTest

from kswarm.devserver import DevServer
from kswarm.ledger import models

APP = str(Path(__file__).resolve().parents[3] / "dashboard" / "app.py")


def app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def test_overview_lists_every_job_and_filters_them_by_phase_and_namespace(
    ledger_env: FilledLedger,
) -> None:
    at = app().run()
    no_exception(at)
    assert at.title[0].value == "Swarm jobs"
    (jobs,) = at.dataframe
    assert set(jobs.value["phase"]) == {"Succeeded", "Failed"} and len(jobs.value) == 3
    assert {m.label for m in at.metric} >= {"Jobs", "Running", "Median swarm speedup", "Tokens"}
    assert len(at.get("plotly_chart")) == 1  # totals over time

    at.multiselect(key="overview.phase").set_value(["Failed"]).run()
    no_exception(at)
    (jobs,) = at.dataframe
    assert list(jobs.value["phase"]) == ["Failed"]
    assert "BudgetExceeded" in jobs.value["reason"].iloc[0]

    at.selectbox(key="overview.namespace").set_value("default").run()
    at.text_input(key="overview.search").set_value("nothing-like-this").run()
    no_exception(at)
    assert at.dataframe[0].value.empty


@pytest.mark.parametrize("kind", ["swarm", "single", "failed"])
def test_the_job_page_shows_timeline_stages_and_ledger_of_each_job(
    ledger_env: FilledLedger, kind: str
) -> None:
    uid = getattr(ledger_env, kind)
    at = app().run()
    at.switch_page("views/job.py")
    at.query_params["job"] = uid
    at.run()
    no_exception(at)
    assert at.title[0].value == "quickstart"
    assert at.selectbox(key="job.select").value == uid
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Critical steps"] == str(ledger_env.critical_steps[uid])
    assert len(at.get("plotly_chart")) == 1  # the timeline
    tables = [df.value for df in at.dataframe]
    stages = next(v for v in tables if "maxSubagentSteps" in v.columns)
    assert len(stages) == ledger_env.stages[uid]
    tools = next(v for v in tables if "tool" in v.columns)
    assert len(tools) > 0 and set(tools["tool"]) >= {"search"}
    assert set(tools["server"]) == {""}  # built-in tools come from no MCP server
    compared = [v for v in tables if "critical_steps" in v.columns]
    if kind == "failed":
        assert not compared  # a failed run is compared with nothing
    else:
        assert list(compared[0].index) == ["swarm", "single"]


def test_the_job_page_says_what_context_management_cut(ledger_env: FilledLedger) -> None:
    """The report of the failed job gets context counts written into the ledger row (what
    ``finish_job`` writes for a job whose prompts were cut); the other jobs have none."""
    engine = sa.create_engine(ledger_env.url)
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(models.Job.report).where(models.Job.uid == ledger_env.failed)
        ).scalar_one()
        report = {**(row or {}), "context": {"masked": 7, "dropped": 3}}
        conn.execute(
            sa.update(models.Job).where(models.Job.uid == ledger_env.failed).values(report=report)
        )
    engine.dispose()
    for uid, shown in ((ledger_env.failed, True), (ledger_env.swarm, False)):
        at = app().run()
        at.switch_page("views/job.py")
        at.query_params["job"] = uid
        at.run()
        no_exception(at)
        captions = [c.value for c in at.caption]
        said = [c for c in captions if c.startswith("Context management")]
        assert bool(said) is shown, captions
        if shown:
            assert "7 tool results masked and 3 messages dropped" in said[0]


def test_the_tool_ledger_filters_and_an_agents_messages_show(ledger_env: FilledLedger) -> None:
    at = app().run()
    at.switch_page("views/job.py")
    at.query_params["job"] = ledger_env.swarm
    at.run()
    at.multiselect(key="job.tools.status").set_value(["succeeded"]).run()
    at.text_input(key="job.tools.search").set_value("Vaskora").run()
    no_exception(at)
    tools = next(df.value for df in at.dataframe if "tool" in df.value.columns)
    assert len(tools) > 0
    assert set(tools["status"]) == {"succeeded"}
    assert all("vaskora" in a.lower() for a in tools["arguments"])

    agents = at.selectbox(key="job.agent")
    agents.select_index(next(i for i, o in enumerate(agents.options) if o.startswith("s1 ")))
    at.run()
    no_exception(at)
    messages = at.get("chat_message")
    assert len(messages) >= 3  # its system prompt, its task, at least one answer
    assert {m.name for m in messages} >= {"system", "user", "assistant"}


def test_the_pools_page_summarises_each_replica(ledger_env: FilledLedger) -> None:
    at = app().run()
    at.switch_page("views/pools.py").run()
    no_exception(at)
    assert at.title[0].value == "Model pools"
    summary = next(df.value for df in at.dataframe if "replica" in df.value.columns)
    assert len(summary) == 2  # the simulated pool's two replicas
    assert summary["calls"].sum() > 0
    assert (summary["p95 latency (s)"] >= summary["p50 latency (s)"]).all()
    assert len(at.get("plotly_chart")) == 3

    at.selectbox(key="pools.window").set_value("all time").run()
    at.multiselect(key="pools.pool").set_value([summary["pool"].iloc[0]]).run()
    no_exception(at)


def test_an_empty_ledger_tells_how_to_run_a_first_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    monkeypatch.setenv("KSWARM_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    from kswarm.ledger import migrating

    migrating.upgrade(f"sqlite:///{tmp_path / 'empty.db'}")
    st.cache_data.clear()
    for page in (None, "views/job.py", "views/pools.py"):
        at = app().run()
        if page:
            at.switch_page(page).run()
        no_exception(at)
        assert at.info, page


async def test_a_running_job_shows_live_and_then_as_finished(
    temporal: DevServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import streamlit as st
    from telemetry_support import example, traced_stack

    from kswarm.sim.config import SimConfig

    url = f"sqlite:///{tmp_path / 'live.db'}"
    monkeypatch.setenv("KSWARM_DATABASE_URL", url)

    def job_page(uid: str) -> AppTest:
        st.cache_data.clear()
        at = app().run()
        at.switch_page("views/job.py")
        at.query_params["job"] = uid
        return at.run()

    slow = SimConfig(time_scale=0.5)  # some seconds of work: time to look at it
    async with traced_stack(temporal.address, tmp_path, ledger_url=url, sim=slow) as stack:
        inp = stack.job(example("quickstart"))
        handle = await stack.start(inp)
        for _ in range(300):  # until the first model calls are in the ledger
            if len(await stack.ledger.list_model_calls(inp.uid)) >= 2:
                break
            await asyncio.sleep(0.1)
        at = await asyncio.to_thread(job_page, inp.uid)
        no_exception(at)
        assert "Running" in at.selectbox(key="job.select").options[0]
        assert len(at.get("plotly_chart")) == 1
        result = await handle.result()
        await stack.ledger.flush()
    at = await asyncio.to_thread(job_page, inp.uid)
    no_exception(at)
    assert "Succeeded" in at.selectbox(key="job.select").options[0]
    assert {m.label: m.value for m in at.metric}["Critical steps"] == str(result.critical_steps)
