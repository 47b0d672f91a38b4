"""Tool servers: what the MCP servers did for the swarms: calls, errors, latency, approvals.

Per ToolServer, from the ledger's tool calls (the ``server`` each call recorded): how many
calls, how many failed (the server's error answers, a server that stayed down) and their share,
p50/p95 latency of the calls that ran, calls of tools with side effects (from the tools' MCP
annotations) and calls waiting for a person's approval (approve or deny them on the Job page).
When the dashboard can reach the cluster, the operator's view of each ToolServer (Ready, its
tools) is shown beside it.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kswarm.dashboard import data, layout

WINDOWS: dict[str, float | None] = {
    "last 15 minutes": 900.0,
    "last hour": 3600.0,
    "last day": 86400.0,
    "all time": None,
}


def latency_by_server(calls: pd.DataFrame) -> go.Figure:
    """A box per server over the latency of its calls that ran."""
    fig = go.Figure()
    ran = calls[calls["status"].isin(["succeeded", "failed"]) & ~calls["denied"]]
    for server, part in ran.groupby("server", sort=True):
        fig.add_trace(go.Box(y=part["duration_s"], name=str(server), boxpoints="all"))
    return fig.update_layout(
        height=300,
        yaxis_title="latency (s)",
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        showlegend=False,
    )


def calls_by_status(calls: pd.DataFrame) -> go.Figure:
    """Stacked bars: each server's calls by status."""
    counts = calls.groupby(["server", "status"]).size().unstack(fill_value=0)
    fig = go.Figure()
    for status in counts.columns:
        fig.add_trace(go.Bar(x=list(counts.index), y=list(counts[status]), name=str(status)))
    return fig.update_layout(
        barmode="stack", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 30}
    )


def _operator_view() -> None:
    status = data.toolserver_status()
    if status is None:
        st.caption(
            "The operator's ToolServer status is not reachable from here (no cluster, or no "
            "permission to list toolservers)."
        )
        return
    if status.empty:
        st.caption("The cluster has no ToolServer objects.")
        return
    st.subheader("ToolServers in the cluster")
    st.dataframe(status, key="toolservers.status", hide_index=True, width="stretch")


def _servers_section(window: float | None, picked: list[str]) -> None:
    calls = data.tool_server_calls(window)
    if picked:
        calls = calls[calls["server"].isin(picked)]
    if calls.empty:
        st.info(
            "No MCP tool calls in this window. Give a job tools of a ToolServer "
            "(`spec.tools: [SERVER__*]`, or `kswarm run FILE --tools tools.yaml`)."
        )
        _operator_view()
        return
    summary = data.server_summary(calls)
    cols = st.columns(4)
    cols[0].metric("MCP tool calls", layout.number(len(calls)))
    cols[1].metric("Errors", layout.number(int(summary["errors"].sum())))
    cols[2].metric(
        "Side-effecting calls", layout.number(int(summary["side-effecting calls"].sum()))
    )
    cols[3].metric("Pending approvals", layout.number(int(summary["pending approvals"].sum())))
    st.dataframe(summary, key="toolservers.summary", hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        st.subheader("Latency by server")
        st.plotly_chart(latency_by_server(calls), key="toolservers.latency")
    with right:
        st.subheader("Calls by status")
        st.plotly_chart(calls_by_status(calls), key="toolservers.statuses")
    st.subheader("By tool")
    by_tool = (
        calls.groupby(["server", "tool"])
        .agg(
            calls=("key", "size"),
            failed=("status", lambda s: int((s == "failed").sum())),
            side_effects=("side_effects", "max"),
            p50_latency_s=("duration_s", "median"),
        )
        .reset_index()
    )
    st.dataframe(by_tool, key="toolservers.tools", hide_index=True, width="stretch")
    _operator_view()


def render() -> None:
    st.title("Tool servers")
    c1, c2 = st.columns([1, 3])
    label = c1.selectbox("Window", list(WINDOWS), index=1, key="toolservers.window")
    everything = data.tool_server_calls(WINDOWS[label])
    picked = c2.multiselect(
        "Server", sorted(everything["server"].unique()), key="toolservers.server"
    )
    layout.live(_servers_section, WINDOWS[label], picked, key="toolservers.live")


if __name__ == "__main__":
    render()
