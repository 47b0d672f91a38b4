"""Overview: every job at a glance, filtered by namespace and phase, and totals over time.

The page an operator opens first: which jobs run, which failed and why, how much each swarm
saved in critical steps (speedup), what it cost in tokens, how well it answered.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kswarm.dashboard import charts, data, layout

ALL = "(all namespaces)"


def _filtered(namespace: str | None, phases: list[str], search: str) -> pd.DataFrame:
    df = data.jobs(namespace)
    if phases:
        df = df[df["phase"].isin(phases)]
    if search:
        df = df[df["name"].str.contains(search, case=False, regex=False)]
    return df


def _kpis(df: pd.DataFrame) -> None:
    finished = df[df["phase"].isin(["Succeeded", "Failed", "Cancelled"])]
    swarm = df[(df["mode"] == "swarm") & df["speedup"].notna()]
    cols = st.columns(5)
    cols[0].metric("Jobs", layout.number(len(df)))
    cols[1].metric("Running", layout.number(int((df["phase"] == "Running").sum())))
    ok = (finished["phase"] == "Succeeded").mean() if len(finished) else None
    cols[2].metric("Succeeded", "-" if ok is None else f"{ok:.0%}")
    cols[3].metric(
        "Median swarm speedup", "-" if swarm.empty else f"{swarm['speedup'].median():.2f}x"
    )
    cols[4].metric("Tokens", layout.number(int(df["tokens_in"].sum() + df["tokens_out"].sum())))


def _jobs_section(namespace: str | None, phases: list[str], search: str) -> None:
    df = _filtered(namespace, phases, search)
    _kpis(df)
    table = df.assign(
        open="job?job=" + df["uid"],
        duration=df["duration_s"].round(2),
        tokens=df["tokens_in"] + df["tokens_out"],
    )
    st.dataframe(
        table[
            [
                "open",
                "name",
                "namespace",
                "mode",
                "phase",
                "created",
                "duration",
                "critical_steps",
                "total_steps",
                "speedup",
                "subagents",
                "tokens",
                "quality",
                "reason",
            ]
        ],
        key="overview.jobs",
        hide_index=True,
        width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("job", display_text="open"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
            "duration": st.column_config.NumberColumn("duration (s)"),
            "critical_steps": st.column_config.NumberColumn("critical steps"),
            "total_steps": st.column_config.NumberColumn("total steps"),
            "speedup": st.column_config.NumberColumn("speedup", format="%.2fx"),
            "quality": st.column_config.ProgressColumn("quality", min_value=0.0, max_value=1.0),
        },
    )
    st.subheader("Totals over time")
    st.plotly_chart(charts.totals_over_time(df), key="overview.totals")


def render() -> None:
    st.title("Swarm jobs")
    namespaces = data.namespaces()
    c1, c2, c3 = st.columns([1, 2, 1])
    chosen = c1.selectbox("Namespace", [ALL, *namespaces], key="overview.namespace")
    phases = c2.multiselect("Phase", list(data.PHASES), key="overview.phase")
    search = c3.text_input("Name contains", key="overview.search")
    namespace = None if chosen == ALL else chosen
    if not namespaces:
        st.info("The ledger has no jobs yet. Run one: `kswarm run examples/quickstart.yaml`.")
        return
    layout.live(_jobs_section, namespace, phases, search, key="overview.live")


if __name__ == "__main__":
    render()
