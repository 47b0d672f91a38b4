"""Rollouts: groups of samples scored for training, and whether the plans stayed parallel.

Per group: each sample's reward terms (λ_aux, r_parallel, r_finish, I[success], Q, R and the
group-relative advantage), R against critical steps (a serial plan sits far to the right), the
λ_aux schedule with the group's epoch marked, and the samples flagged for serial collapse.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kswarm.dashboard import data, layout

ALL = "(all groups)"
TERMS = ["lambda_aux", "r_parallel", "r_finish", "success", "quality", "reward", "advantage"]


def groups(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per group: its epoch, size, mean terms and collapsed samples, newest first."""
    g = samples.groupby("group", sort=False)
    return pd.DataFrame(
        {
            "name": g["group_name"].first(),
            "epoch": g["epoch"].first().astype(int).astype(str)
            + " of "
            + g["epochs"].first().astype(int).astype(str),
            "samples": g["sample"].count(),
            "mean R": g["reward"].mean().round(4),
            "mean Q": g["quality"].mean().round(4),
            "success": g["success"].mean().round(3),
            "mean critical steps": g["critical_steps"].mean().round(1),
            "collapsed": g["serial_collapse"].sum().astype(int),
            "created": g["created"].min(),
        }
    ).reset_index()


def reward_vs_critical_steps(samples: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for collapsed, part in samples.groupby("serial_collapse"):
        fig.add_trace(
            go.Scatter(
                x=part["critical_steps"],
                y=part["reward"],
                mode="markers",
                name="serial collapse" if collapsed else "parallel",
                text=part["group_name"] + " #" + part["sample"].astype(str),
                marker={"size": 10, "symbol": "x" if collapsed else "circle"},
            )
        )
    fig.update_layout(xaxis_title="critical steps", yaxis_title="R", height=360)
    return fig


def lambda_schedule(start: float, end: float, epochs: int, epoch: int | None) -> go.Figure:
    xs = list(range(max(1, epochs)))
    ys = [start if epochs <= 1 else start + (end - start) * e / (epochs - 1) for e in xs]
    fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", name="λ_aux"))
    if epoch is not None and epoch < len(ys):
        fig.add_trace(
            go.Scatter(
                x=[epoch], y=[ys[epoch]], mode="markers", name="this group", marker={"size": 14}
            )
        )
    fig.update_layout(xaxis_title="epoch", yaxis_title="λ_aux", height=300)
    return fig


def _section(choice: str) -> None:
    samples = data.rollout_samples()
    table = groups(samples)
    cols = st.columns(4)
    cols[0].metric("Groups", layout.number(len(table)))
    cols[1].metric("Samples", layout.number(len(samples)))
    cols[2].metric("Mean R", f"{samples['reward'].mean():.3f}")
    cols[3].metric("Serial collapse", layout.number(int(samples["serial_collapse"].sum())))
    st.subheader("Groups")
    st.dataframe(table, key="rollouts.groups", hide_index=True, width="stretch")
    shown = samples if choice == ALL else samples[samples["group"] == choice]
    st.subheader("Reward terms per sample")
    st.dataframe(
        shown[["group_name", "sample", "phase", "critical_steps", *TERMS, "serial_collapse"]],
        key="rollouts.samples",
        hide_index=True,
        width="stretch",
        column_config={"serial_collapse": st.column_config.CheckboxColumn("serial collapse")},
    )
    left, right = st.columns(2)
    left.subheader("R against critical steps")
    left.plotly_chart(reward_vs_critical_steps(shown), key="rollouts.scatter")
    first = shown.iloc[0]
    right.subheader("λ_aux schedule")
    right.plotly_chart(
        lambda_schedule(
            float(first["lambda_start"]),
            float(first["lambda_end"]),
            int(first["epochs"]),
            int(first["epoch"]) if choice != ALL else None,
        ),
        key="rollouts.lambda",
    )


def render() -> None:
    st.title("Rollouts")
    samples = data.rollout_samples()
    if samples.empty:
        st.info(
            "No rollout groups yet. Sample a job: "
            "`kswarm rollout examples/quickstart.yaml --samples 8`."
        )
        return
    names = dict(zip(samples["group"], samples["group_name"], strict=False))
    choice = st.selectbox(
        "Group",
        [ALL, *names],
        format_func=lambda g: g if g == ALL else f"{names[g]} ({g})",
        key="rollouts.group",
    )
    layout.live(_section, choice, key="rollouts.live")


if __name__ == "__main__":
    render()
