"""The dashboard's figures, built with plotly from the frames of :mod:`kswarm.dashboard.data`.

Pages stay short and the figures stay testable without Streamlit: each function takes frames
and returns a ``plotly.graph_objects.Figure``. The job timeline is the one that matters: one row
per agent (the orchestrator on top, sub-agents by stage), one bar per model step and per tool
call, in seconds since the job started, and the critical path drawn through the steps on it.
Bars go in a handful of array traces, not one trace per bar, so a 100-sub-agent,
1,500-tool-call job stays one quick figure.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from kswarm.telemetry.critical_path import MAIN_ROLES, CriticalPath

__all__ = ["concurrency", "job_timeline", "latency_by_replica", "throughput", "totals_over_time"]

CRITICAL = "#d62728"
TOOL = "rgba(90,90,90,0.6)"
LIFETIME = "rgba(99,110,250,0.13)"
PALETTE = qualitative.Set2
PHASE_COLORS = {
    "Succeeded": "#2ca02c",
    "Failed": "#d62728",
    "Cancelled": "#7f7f7f",
    "Running": "#1f77b4",
    "Pending": "#bcbd22",
}
MAX_STAGE_MARKS = 30
BUCKETS = (
    (pd.Timedelta(minutes=15), "10s", "%H:%M:%S"),
    (pd.Timedelta(hours=3), "min", "%H:%M"),
    (pd.Timedelta(days=3), "h", "%d %b %H:00"),
    (pd.Timedelta.max, "D", "%Y-%m-%d"),
)
"""Time buckets of the totals: the first whose span covers the jobs shown."""


EPOCH = pd.Timestamp(0, tz="UTC")


def _ts(series: pd.Series) -> pd.Series:
    """Epoch seconds of a UTC datetime column, whatever its resolution."""
    return (series - EPOCH) / pd.Timedelta(seconds=1)


def _labels(agents: pd.DataFrame) -> dict[str, str]:
    """A unique row label per agent: the main agent first, then sub-agents by stage, name."""
    order = agents.assign(
        main=~agents["role"].isin(MAIN_ROLES), stage_=agents["stage"].fillna(0)
    ).sort_values(["main", "stage_", "id"])
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for row in order.itertuples():
        if row.role in MAIN_ROLES:
            label = str(row.role)
        else:
            label = f"s{int(row.stage_)} {str(row.name)[:28]}"
        if label in seen:
            label = f"{label} ({str(row.id).rsplit('/', 1)[-1]})"
        seen.add(label)
        labels[str(row.id)] = label
    return labels


def job_timeline(
    agents: pd.DataFrame,
    calls: pd.DataFrame,
    tools: pd.DataFrame,
    path: CriticalPath | None,
    t0: float,
) -> go.Figure:
    """The Gantt chart of a job: every agent's model steps and tool calls, critical path marked."""
    fig = go.Figure()
    if agents.empty or calls.empty:
        return fig.update_layout(title="no model calls yet", height=200)
    labels = _labels(agents)
    c = calls.assign(start=_ts(calls["started_at"]) - t0)
    c["end"] = c["start"] + c["latency_seconds"].fillna(0.0)
    c["ok"] = c["status"] == "ok"
    steps = c.groupby(["agent_id", "step"], as_index=False).agg(
        start=("start", "min"), end=("end", "max"), ok=("ok", "any"), attempts=("attempt", "count")
    )
    stage_of = dict(zip(agents["id"], agents["stage"].fillna(0), strict=True))
    role_of = dict(zip(agents["id"], agents["role"], strict=True))
    steps["stage"] = [
        s if role_of.get(a) in MAIN_ROLES else stage_of.get(a, 0)
        for a, s in zip(steps["agent_id"], steps["step"], strict=True)
    ]
    steps["row"] = steps["agent_id"].map(labels)
    steps = steps.dropna(subset=["row"])
    critical = path.on_path() if path is not None else set()
    steps["critical"] = [
        (a, s) in critical for a, s in zip(steps["agent_id"], steps["step"], strict=True)
    ]
    life = agents[agents["id"].isin(labels.keys())]
    life_start = _ts(life["started_at"]) - t0
    life_end = (_ts(life["finished_at"]) - t0).fillna(float(steps["end"].max()))
    fig.add_trace(
        go.Bar(
            name="agent",
            orientation="h",
            y=life["id"].map(labels),
            base=life_start,
            x=(life_end - life_start).clip(lower=1e-3),
            width=0.9,
            marker={"color": LIFETIME},
            hovertemplate="%{y}: alive %{base:.2f}s + %{x:.2f}s<extra></extra>",
        )
    )
    fig.add_trace(
        go.Bar(
            name="model steps",
            orientation="h",
            y=steps["row"],
            base=steps["start"],
            x=(steps["end"] - steps["start"]).clip(lower=1e-3),
            width=0.7,
            marker={
                "color": [PALETTE[int(s) % len(PALETTE)] for s in steps["stage"]],
                "line": {
                    "color": [CRITICAL if k else "rgba(0,0,0,0)" for k in steps["critical"]],
                    "width": 2,
                },
            },
            customdata=steps[["step", "stage", "attempts"]].to_numpy(),
            hovertemplate="%{y}<br>step %{customdata[0]} (stage %{customdata[1]}), "
            "%{customdata[2]} attempt(s)<br>%{base:.2f}s + %{x:.2f}s<extra></extra>",
        )
    )
    if not tools.empty:
        t = tools.dropna(subset=["finished_at", "duration_seconds"])
        t = t[(t["duration_seconds"] > 0) & t["agent_id"].isin(labels.keys())]
        end = _ts(t["finished_at"]) - t0
        fig.add_trace(
            go.Bar(
                name="tool calls",
                orientation="h",
                y=t["agent_id"].map(labels),
                base=end - t["duration_seconds"],
                x=t["duration_seconds"].clip(lower=1e-3),
                width=0.25,
                marker={"color": TOOL},
                customdata=t[["tool", "status"]].to_numpy(),
                hovertemplate="%{y}<br>%{customdata[0]}: %{customdata[1]}"
                "<br>%{base:.2f}s + %{x:.3f}s<extra></extra>",
            )
        )
    on = steps[steps["critical"]].sort_values(["stage", "start"])
    if not on.empty:
        fig.add_trace(
            go.Scatter(
                name=f"critical path ({path.steps if path else len(on)} steps)",
                x=(on["start"] + on["end"]) / 2,
                y=on["row"],
                mode="lines+markers",
                line={"color": CRITICAL, "width": 1.5},
                marker={"size": 5, "color": CRITICAL},
                hoverinfo="skip",
            )
        )
    mains = steps[steps["agent_id"].map(role_of).isin(MAIN_ROLES)].sort_values("step")
    if 1 < len(mains) <= MAX_STAGE_MARKS:
        for row in mains.itertuples():
            fig.add_vline(x=row.start, line={"dash": "dot", "width": 1, "color": "#999"})
    rows = list(dict.fromkeys(labels.values()))
    fig.update_layout(
        barmode="overlay",
        height=min(2400, 140 + 16 * len(rows)),
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        xaxis={"title": "seconds since the job started"},
        yaxis={"categoryorder": "array", "categoryarray": rows, "autorange": "reversed"},
    )
    return fig


def totals_over_time(jobs: pd.DataFrame) -> go.Figure:
    """Jobs started per time bucket by phase (bars) and their tokens (line)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if jobs.empty:
        return fig.update_layout(height=260)
    span = jobs["created"].max() - jobs["created"].min()
    freq, fmt = next((f, fm) for limit, f, fm in BUCKETS if span <= limit)
    df = jobs.assign(
        bucket=jobs["created"].dt.floor(freq).dt.strftime(fmt),
        tokens=jobs["tokens_in"] + jobs["tokens_out"],
    )
    counts = df.groupby(["bucket", "phase"]).size().unstack(fill_value=0)
    for phase in counts.columns:
        fig.add_trace(
            go.Bar(
                x=counts.index,
                y=counts[phase],
                name=str(phase),
                marker_color=PHASE_COLORS.get(str(phase)),
            ),
            secondary_y=False,
        )
    tokens = df.groupby("bucket")["tokens"].sum()
    fig.add_trace(
        go.Scatter(x=tokens.index, y=tokens, name="tokens", mode="lines+markers"),
        secondary_y=True,
    )
    fig.update_layout(
        barmode="stack",
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        xaxis={"type": "category", "title": "jobs created"},
    )
    fig.update_yaxes(title_text="jobs", secondary_y=False)
    fig.update_yaxes(title_text="tokens", secondary_y=True)
    return fig


def _bucket_seconds(calls: pd.DataFrame) -> int:
    span = (calls["started_at"].max() - calls["started_at"].min()).total_seconds()
    return max(1, int(span / 60))


def throughput(calls: pd.DataFrame) -> go.Figure:
    """Calls per second over time, one line per pool and replica."""
    fig = go.Figure()
    if calls.empty:
        return fig.update_layout(height=260)
    size = _bucket_seconds(calls)
    df = calls.assign(
        bucket=calls["started_at"].dt.floor(f"{size}s"),
        series=calls["pool"] + " " + calls["replica"],
    )
    rate = df.groupby(["series", "bucket"]).size() / size
    for series, part in rate.groupby(level=0):
        fig.add_trace(go.Scatter(x=part.index.get_level_values(1), y=part.values, name=str(series)))
    return fig.update_layout(
        height=300, yaxis_title="calls/s", margin={"l": 10, "r": 10, "t": 30, "b": 30}
    )


def concurrency(calls: pd.DataFrame) -> go.Figure:
    """Calls in flight over time per pool, from each attempt's start and latency."""
    fig = go.Figure()
    if calls.empty:
        return fig.update_layout(height=260)
    for pool, part in calls.groupby("pool"):
        start = part["started_at"]
        end = start + pd.to_timedelta(part["latency_s"].fillna(0.0), unit="s")
        events = pd.concat([pd.Series(1, index=start), pd.Series(-1, index=end)]).sort_index()
        level = events.cumsum()
        fig.add_trace(
            go.Scatter(x=level.index, y=level.values, name=str(pool), line={"shape": "hv"})
        )
    return fig.update_layout(
        height=300, yaxis_title="in flight", margin={"l": 10, "r": 10, "t": 30, "b": 30}
    )


def latency_by_replica(calls: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for (pool, replica), part in calls.groupby(["pool", "replica"]):
        fig.add_trace(go.Box(y=part["latency_s"], name=f"{pool} {replica}", boxpoints=False))
    return fig.update_layout(
        height=300,
        yaxis_title="latency (s)",
        margin={"l": 10, "r": 10, "t": 30, "b": 30},
        showlegend=False,
    )


def figure_size(fig: go.Figure) -> dict[str, Any]:
    """Bars and points in a figure (for tests and the benchmark)."""
    return {
        "traces": len(fig.data),
        "points": sum(len(t.x if t.x is not None else []) for t in fig.data),
    }
