"""The Tool servers page, driven with Streamlit's AppTest against a ledger of a real job whose
agent called the tools of real MCP servers (``mcp_ledger``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from dashboard_support import McpLedger
from streamlit.testing.v1 import AppTest

from kswarm.dashboard import data
from kswarm.ledger import migrating

APP = str(Path(__file__).resolve().parents[3] / "dashboard" / "app.py")


@pytest.fixture
def mcp_env(mcp_ledger: McpLedger, monkeypatch: pytest.MonkeyPatch) -> McpLedger:
    import streamlit as st

    monkeypatch.setenv("KSWARM_DATABASE_URL", mcp_ledger.url)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")  # no cluster: the operator's view is off
    st.cache_data.clear()
    return mcp_ledger


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/toolservers.py")
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def test_each_server_has_its_calls_errors_latency_and_side_effects(mcp_env: McpLedger) -> None:
    at = page()
    no_exception(at)
    assert at.title[0].value == "Tool servers"
    summary = next(df.value for df in at.dataframe if "error %" in df.value.columns)
    by = summary.set_index("server")
    assert list(by.index) == ["git", "time"]  # not "nope": its call was refused
    assert by.loc["time", ["calls", "errors", "error %", "side-effecting calls"]].tolist() == [
        2,
        1,
        50.0,
        0,
    ]
    assert by.loc["git", ["calls", "errors", "side-effecting calls"]].tolist() == [2, 0, 1]
    assert (by["pending approvals"] == 0).all() and by["tools"].to_dict() == {"git": 2, "time": 1}
    assert (by["p50 latency (s)"] > 0).all()
    assert (by["p95 latency (s)"] >= by["p50 latency (s)"]).all()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["MCP tool calls"] == "4" and metrics["Errors"] == "1"
    assert metrics["Side-effecting calls"] == "1"
    assert len(at.get("plotly_chart")) == 2
    tools = next(df.value for df in at.dataframe if "side_effects" in df.value.columns)
    effects = dict(zip(tools["tool"], tools["side_effects"], strict=True))
    assert effects == {
        "git__git_reset": True,
        "git__git_status": False,
        "time__get_current_time": False,
    }
    assert any("not reachable" in c.value for c in at.caption)


def test_the_numbers_are_the_ledgers(mcp_env: McpLedger) -> None:
    """The page's summary is what the ledger's rows say, computed the same way by hand."""
    import sqlalchemy as sa

    engine = sa.create_engine(mcp_env.url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT server, status, duration_seconds FROM tool_calls WHERE job_uid = :u"),
            {"u": mcp_env.uid},
        ).all()
    engine.dispose()
    time_calls = [r for r in rows if r[0] == "time"]
    latencies = pd.Series([r[2] for r in time_calls])
    summary = data.server_summary(data.tool_server_calls(None)).set_index("server")
    assert summary.loc["time", "p50 latency (s)"] == round(float(latencies.quantile(0.5)), 4)
    assert summary.loc["time", "errors"] == sum(r[1] == "failed" for r in time_calls)


def test_a_server_can_be_picked_and_the_window_changed(mcp_env: McpLedger) -> None:
    at = page()
    at.selectbox(key="toolservers.window").set_value("all time").run()
    at.multiselect(key="toolservers.server").set_value(["git"]).run()
    no_exception(at)
    summary = next(df.value for df in at.dataframe if "error %" in df.value.columns)
    assert list(summary["server"]) == ["git"]


def test_a_ledger_without_mcp_calls_says_how_to_get_some(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit as st

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrating.upgrade(url)
    monkeypatch.setenv("KSWARM_DATABASE_URL", url)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    st.cache_data.clear()
    at = page()
    no_exception(at)
    assert "SERVER__*" in at.info[0].value


def test_the_operators_view_of_toolservers_as_rows() -> None:
    """What the cluster answers (a ToolServer's status as the operator writes it) as rows."""
    items = [
        {
            "metadata": {"namespace": "team", "name": "time"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Listed", "message": "2 tools"}
                ],
                "tools": [{"name": "time__get_current_time"}, {"name": "time__convert_time"}],
            },
        },
        {"metadata": {"namespace": "team", "name": "new"}},
    ]
    rows = data.toolserver_rows(items).to_dict("records")
    assert rows[0]["ready"] == "True" and rows[0]["tools"] == 2
    assert rows[0]["tool names"] == "time__get_current_time, time__convert_time"
    assert rows[1]["ready"] == "Unknown" and rows[1]["tools"] == 0


def test_rows_from_before_the_server_column_take_the_server_from_the_tools_name(
    mcp_ledger: McpLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same job's rows as a ledger written before revision 0004 holds them (no server, no
    flag): the page still groups them by server, with no side-effecting calls known."""
    import shutil

    import sqlalchemy as sa
    import streamlit as st

    copy = tmp_path / "old.db"
    shutil.copy(mcp_ledger.url.removeprefix("sqlite:///"), copy)
    engine = sa.create_engine(f"sqlite:///{copy}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tool_calls SET server = NULL, side_effects = NULL"))
    engine.dispose()
    monkeypatch.setenv("KSWARM_DATABASE_URL", f"sqlite:///{copy}")
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")
    st.cache_data.clear()
    at = page()
    no_exception(at)
    summary = next(df.value for df in at.dataframe if "error %" in df.value.columns)
    by = summary.set_index("server")
    assert list(by.index) == ["git", "time"]
    assert by["calls"].to_dict() == {"git": 2, "time": 2}
    assert (by["side-effecting calls"] == 0).all()
