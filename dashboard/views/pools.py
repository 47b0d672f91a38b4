"""Pools: the model servers' side of the story: load, latency, time to first token, errors.

A swarm is as fast as its pools let it be. Per pool and replica this page shows calls per
second, latency and TTFT percentiles, failed attempts (429/503/timeouts, which the client
retried) and how many calls were in flight: at the peak, from the ledger's attempts, and now,
from the workers' ``/metrics`` when ``KSWARM_METRICS_URLS`` names them.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kswarm.dashboard import charts, data, layout

WINDOWS: dict[str, float | None] = {
    "last 5 minutes": 300.0,
    "last 15 minutes": 900.0,
    "last hour": 3600.0,
    "last day": 86400.0,
    "all time": None,
}


def _peak_in_flight(part: pd.DataFrame) -> int:
    start = part["started_at"]
    end = start + pd.to_timedelta(part["latency_s"].fillna(0.0), unit="s")
    events = pd.concat([pd.Series(1, index=start), pd.Series(-1, index=end)]).sort_index()
    return int(events.cumsum().max()) if len(events) else 0


def summary(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per pool and replica: rates, percentiles, errors, peak concurrency."""
    rows = []
    for (pool, replica), part in calls.groupby(["pool", "replica"]):
        end = part["started_at"] + pd.to_timedelta(part["latency_s"].fillna(0.0), unit="s")
        active = max(1e-3, (end.max() - part["started_at"].min()).total_seconds())
        errors = int((part["status"] != "ok").sum())
        lat, ttft = part["latency_s"].dropna(), part["ttft_s"].dropna()
        rows.append(
            {
                "pool": pool,
                "replica": replica,
                "calls": len(part),
                "calls/s": round(len(part) / active, 2),
                "errors": errors,
                "error %": round(100 * errors / len(part), 1),
                "p50 latency (s)": round(lat.quantile(0.5), 3) if len(lat) else None,
                "p95 latency (s)": round(lat.quantile(0.95), 3) if len(lat) else None,
                "p50 TTFT (s)": round(ttft.quantile(0.5), 3) if len(ttft) else None,
                "p95 TTFT (s)": round(ttft.quantile(0.95), 3) if len(ttft) else None,
                "peak in flight": _peak_in_flight(part),
                "tokens": int(part["tokens_in"].sum() + part["tokens_out"].sum()),
            }
        )
    return pd.DataFrame(rows)


def _pools_section(window: float | None, pools: list[str]) -> None:
    calls = data.pool_calls(window)
    if pools:
        calls = calls[calls["pool"].isin(pools)]
    if calls.empty:
        st.info("No model calls in this window.")
        return
    live = data.live_in_flight()
    cols = st.columns(4)
    cols[0].metric("Model-call attempts", layout.number(len(calls)))
    cols[1].metric("Failed attempts", layout.number(int((calls["status"] != "ok").sum())))
    cols[2].metric("p95 latency", layout.seconds(calls["latency_s"].quantile(0.95)))
    cols[3].metric(
        "In flight now",
        layout.number(sum(live.values())) if live else "-",
        help="from the workers' /metrics named in KSWARM_METRICS_URLS",
    )
    st.dataframe(summary(calls), key="pools.summary", hide_index=True, width="stretch")
    left, right = st.columns(2)
    with left:
        st.subheader("Calls per second")
        st.plotly_chart(charts.throughput(calls), key="pools.throughput")
    with right:
        st.subheader("In flight")
        st.plotly_chart(charts.concurrency(calls), key="pools.concurrency")
    st.subheader("Latency by replica")
    st.plotly_chart(charts.latency_by_replica(calls), key="pools.latency")
    errors = calls[calls["status"] != "ok"]
    if not errors.empty:
        st.subheader("Failed attempts")
        by = errors.groupby(["pool", "replica", "status"]).size().rename("attempts")
        st.dataframe(by.reset_index(), key="pools.errors", hide_index=True, width="stretch")


def render() -> None:
    st.title("Model pools")
    c1, c2 = st.columns([1, 3])
    label = c1.selectbox("Window", list(WINDOWS), index=2, key="pools.window")
    everything = data.pool_calls(WINDOWS[label])
    pools = c2.multiselect("Pool", sorted(everything["pool"].unique()), key="pools.pool")
    layout.live(_pools_section, WINDOWS[label], pools, key="pools.live")


if __name__ == "__main__":
    render()
