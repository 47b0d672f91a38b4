"""Job: one swarm job in depth: where its time went, what it did, and whether the swarm paid.

The timeline shows the orchestrator and every sub-agent, stage by stage, with the critical path
(the steps that made the job as long as it was) drawn through it; the stage table gives the
same accounting as the run report; the tool-call ledger and one agent's messages say what the
agents actually did; and when the same task also ran with one agent, the two are compared.

A tool call that waits for a person's approval gets Approve and Deny (with a reason) buttons:
they send the decision exactly as ``kswarm approve``/``kswarm deny`` do
(:func:`kswarm.approving.send`, to the Temporal server of ``KSWARM_TEMPORAL_ADDRESS``); who
decides is the signed-in user, else ``KSWARM_DASHBOARD_USER``, else this process's user.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import getpass
import json
import os
from typing import Any

import pandas as pd
import streamlit as st

from kswarm import approving
from kswarm.dashboard import charts, data, layout
from kswarm.telemetry.ledger_spans import timestamp
from kswarm.tools import server_of
from kswarm.workflows.approvals import ToolCallDecision

MESSAGE_CHARS = 2000


def _pick_job(jobs: pd.DataFrame) -> str:
    """The job from ``?job=`` (uid or name) or the selector; kept in the URL."""
    uids = list(jobs["uid"])
    labels = {r.uid: f"{r.name} · {r.mode} · {r.phase} · {r.uid}" for r in jobs.itertuples()}
    wanted = st.query_params.get("job")
    if wanted and wanted not in labels:
        named = jobs[jobs["name"] == wanted]
        wanted = named["uid"].iloc[0] if not named.empty else None
    index = uids.index(wanted) if wanted in labels else 0
    uid = str(
        st.selectbox("Job", uids, index=index, format_func=lambda u: labels[u], key="job.select")
    )
    if st.query_params.get("job") != uid:
        st.query_params["job"] = uid
    return uid


PHASE_COLORS = {"Succeeded": "green", "Failed": "red", "Running": "blue", "Cancelled": "gray"}


def _header(job: dict[str, Any], rows: data.JobRows, path: Any) -> None:
    st.title(job["name"])
    st.badge(job["phase"], color=PHASE_COLORS.get(job["phase"], "orange"))  # type: ignore[arg-type]
    st.caption(
        f"{job['namespace']} · {job['mode']} · uid {job['uid']}"
        + (f" · {job['reason']}" if job.get("reason") else "")
    )
    tools = [t for t in rows.tool_calls if (t.get("duration_seconds") or 0) > 0]
    subagents = [a for a in rows.agents if a["role"] == "subagent"]
    critical = job.get("critical_steps")
    total = job.get("total_steps")
    cols = st.columns(7)
    cols[0].metric(
        "Critical steps",
        layout.number(critical if critical is not None else path.steps if path else None),
        help="sum over stages of main steps + the longest sub-agent; from the trace: "
        + (str(path.steps) if path else "-"),
    )
    cols[1].metric(
        "Total steps", layout.number(total if total is not None else path and path.total_steps)
    )
    cols[2].metric("Speedup", "-" if job.get("speedup") is None else f"{job['speedup']:.2f}x")
    cols[3].metric("Sub-agents", layout.number(len(subagents)))
    cols[4].metric("Tool calls run", layout.number(len(tools)))
    cols[5].metric(
        "Tokens", layout.number((job["tokens_input"] or 0) + (job["tokens_output"] or 0))
    )
    wall = job.get("wall_seconds")
    cols[6].metric("Wall", layout.seconds(wall if wall is not None else path and path.wall_seconds))
    context = (job.get("report") or {}).get("context") or {}
    if context.get("masked") or context.get("dropped"):
        st.caption(
            f"Context management: {context.get('masked', 0)} tool results masked and "
            f"{context.get('dropped', 0)} messages dropped from prompts (the ledger keeps them)"
        )


def _stages(job: dict[str, Any], path: Any, names: dict[str, str]) -> pd.DataFrame:
    on_path = {s.stage: s for s in path.stages} if path else {}
    report = (job.get("report") or {}).get("stages")
    if report:
        rows = [
            {
                "stage": s["stage"],
                "mainSteps": s["main_steps"],
                "maxSubagentSteps": s["max_subagent_steps"],
                "subagents": s["subagents"],
            }
            for s in report
        ]
    else:  # still running: the trace's view of the stages so far
        rows = [
            {
                "stage": s.stage,
                "mainSteps": s.main_steps,
                "maxSubagentSteps": s.subagent_steps,
                "subagents": s.subagents,
            }
            for s in on_path.values()
        ]
    df = pd.DataFrame(rows, columns=["stage", "mainSteps", "maxSubagentSteps", "subagents"])
    critical = {s: on_path[s].critical_agent for s in on_path}
    df["critical sub-agent"] = [names.get(critical.get(s) or "", "-") for s in df["stage"]]
    df["seconds on path"] = [
        round(on_path[s].seconds, 3) if s in on_path else None for s in df["stage"]
    ]
    return df


def _tool_ledger(rows: data.JobRows, names: dict[str, str]) -> None:
    tools = rows.frame("tool_calls")
    if tools.empty:
        st.caption("No tool calls.")
        return
    tools["agent"] = tools["agent_id"].map(names).fillna(tools["agent_id"])
    # The MCP server the call recorded (older rows: from the name), empty for built-in tools.
    recorded = tools["server"] if "server" in tools else pd.Series(None, index=tools.index)
    tools["server"] = [
        str(srv) if isinstance(srv, str) and srv else server_of(str(tool))
        for srv, tool in zip(recorded, tools["tool"], strict=True)
    ]
    flags = tools["side_effects"] if "side_effects" in tools else pd.Series(None, index=tools.index)
    tools["side effects"] = [_flag(v) for v in flags]
    decisions = tools["approval"] if "approval" in tools else pd.Series(None, index=tools.index)
    tools["approval"] = [_approval_text(a) for a in decisions]
    c1, c2, c3, c4 = st.columns(4)
    picked_tools = c1.multiselect("Tool", sorted(tools["tool"].unique()), key="job.tools.tool")
    statuses = c2.multiselect("Status", sorted(tools["status"].unique()), key="job.tools.status")
    agent = c3.selectbox(
        "Agent", ["(all)", *sorted(tools["agent"].unique())], key="job.tools.agent"
    )
    text = c4.text_input("Arguments contain", key="job.tools.search")
    if picked_tools:
        tools = tools[tools["tool"].isin(picked_tools)]
    if statuses:
        tools = tools[tools["status"].isin(statuses)]
    if agent != "(all)":
        tools = tools[tools["agent"] == agent]
    if text:
        tools = tools[tools["arguments"].str.contains(text, case=False, regex=False)]
    st.caption(f"{len(tools)} tool calls")
    st.dataframe(
        tools[
            [
                "agent",
                "step",
                "index",
                "tool",
                "server",
                "side effects",
                "status",
                "approval",
                "attempts",
                "deduplicated",
                "duration_seconds",
                "arguments",
                "result",
                "error",
            ]
        ],
        key="job.tools.table",
        hide_index=True,
        width="stretch",
    )


def _flag(value: Any) -> str:
    """A side-effect flag as the table shows it: yes, no, or ``-`` (no registered tool)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return "yes" if bool(value) else "no"


def _approval_text(approval: Any) -> str:
    """A decision as one line: ``approved by alice``, ``denied by bob: too risky``."""
    if isinstance(approval, str):  # a JSON text, as some drivers hand it over
        try:
            approval = json.loads(approval)
        except ValueError:
            return str(approval)
    if not isinstance(approval, dict):
        return ""
    verb = "approved" if approval.get("approved") else "denied"
    reason = f": {approval['reason']}" if approval.get("reason") else ""
    return f"{verb} by {approval.get('by', '?')}{reason}"


def _default_user() -> str:
    try:
        if st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "")
    except Exception:  # no authentication configured
        pass
    return os.environ.get("KSWARM_DASHBOARD_USER") or getpass.getuser()


def _send_decision(job_uid: str, call: str, approved: bool) -> None:
    """Approve or Deny clicked: send the decision as ``kswarm approve``/``deny`` would and
    keep what happened for the page to show (the ledger says it once the job recorded it)."""
    by = str(st.session_state.get("job.approvals.by") or "").strip()
    reason = str(st.session_state.get(f"job.approvals.reason.{call}") or "").strip()
    said: dict[str, tuple[bool, str]] = st.session_state.setdefault("job.approvals.said", {})
    if not by:
        said[call] = (False, "Decide as: a name is needed (who decided goes into the ledger)")
        return
    if not approved and not reason:
        said[call] = (False, "Reason: a denial needs one (the model reads it as the answer)")
        return
    decision = ToolCallDecision(call=call, approved=approved, by=by, reason=reason)
    # A thread of its own: the script's thread may already run an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(asyncio.run, approving.send(job_uid, call, decision))
        try:
            future.result(timeout=30)
        except Exception as e:  # no such workflow, Temporal away
            said[call] = (False, f"{call}: not sent: {type(e).__name__}: {e}")
            return
    verb = "approved" if approved else "denied"
    said[call] = (True, f"{call}: {verb} by {by}" + (f": {reason}" if reason else ""))
    data.job_rows.clear()  # the next run reads the decision from the ledger


def _approvals(uid: str, rows: data.JobRows) -> None:
    """The calls waiting for a person's decision, each with Approve and Deny beside it."""
    waiting = [t for t in rows.tool_calls if t["status"] == data.AWAITING]
    said: dict[str, tuple[bool, str]] = st.session_state.get("job.approvals.said", {})
    mine = {call: s for call, s in said.items() if call.startswith(f"{uid}/")}
    if not waiting and not mine:
        return
    st.subheader("Waiting for approval")
    if "job.approvals.by" not in st.session_state:
        st.session_state["job.approvals.by"] = _default_user()
    st.text_input("Decide as", key="job.approvals.by")
    for _call, (ok, text) in mine.items():
        (st.success if ok else st.error)(text)
    for t in sorted(waiting, key=lambda t: str(t["key"])):
        call = str(t["key"])
        if mine.get(call, (False, ""))[0]:
            continue  # decided here; the ledger shows it once the job has recorded it
        with st.container(border=True):
            info, why, yes, no = st.columns([4, 3, 1.5, 1.2], vertical_alignment="bottom")
            server = t.get("server") or server_of(str(t["tool"])) or "built-in"
            flag = t.get("side_effects")
            effects = None if flag is None else ("side effects" if flag else "no side effects")
            info.markdown(
                f"**{t['tool']}** · {server}"
                + (f" · {effects}" if effects else "")
                + f"  \n`{call}`"
            )
            info.code(str(t.get("arguments") or ""), language="json")
            why.text_input("Reason (needed to deny)", key=f"job.approvals.reason.{call}")
            yes.button(
                "Approve",
                key=f"job.approvals.approve.{call}",
                type="primary",
                on_click=_send_decision,
                args=(uid, call, True),
            )
            no.button(
                "Deny",
                key=f"job.approvals.deny.{call}",
                on_click=_send_decision,
                args=(uid, call, False),
            )


def _messages(rows: data.JobRows, names: dict[str, str]) -> None:
    by_label = {label: agent_id for agent_id, label in names.items()}
    label = st.selectbox("Agent", list(by_label), key="job.agent")
    for m in data.agent_messages(by_label[str(label)]):
        role = str(m.get("role", "?"))
        with st.chat_message(role, avatar={"system": "⚙️", "tool": "🔧"}.get(role)):
            content = str(m.get("content") or "")
            st.text(content[:MESSAGE_CHARS] + ("..." if len(content) > MESSAGE_CHARS else ""))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                st.code(f"{fn.get('name')}({str(fn.get('arguments', ''))[:MESSAGE_CHARS]})")


def _comparison(uid: str) -> None:
    both = data.comparison(uid)
    if both is None:
        st.caption("Run the same task with `--mode single` to compare the swarm with one agent.")
        return
    st.dataframe(both, key="job.compare.table", width="stretch")
    swarm, single = both.loc["swarm"], both.loc["single"]
    if swarm["critical_steps"] and swarm["wall_s"] and single["wall_s"]:
        steps = single["critical_steps"] / swarm["critical_steps"]
        st.write(
            f"The swarm's critical path is **{steps:.1f}x shorter** in steps than one agent's "
            f"on the same task; wall time {layout.seconds(swarm['wall_s'])} against "
            f"{layout.seconds(single['wall_s'])}."
        )


def _job_section(uid: str) -> None:
    rows = data.job_rows(uid)
    if rows is None:
        st.warning(f"Job {uid} is no longer in the ledger.")
        return
    job, path = rows.job, data.job_path(uid)
    _header(job, rows, path)
    _approvals(uid, rows)
    agents = rows.frame("agents")
    names = {
        str(a["id"]): (a["role"] if a["role"] != "subagent" else f"s{a['stage']} {a['name']}")
        for a in sorted(
            rows.agents, key=lambda a: (a["role"] == "subagent", a["stage"] or 0, a["id"])
        )
    }
    t0 = timestamp(job["started_at"]) or 0.0
    st.subheader("Timeline")
    st.plotly_chart(
        charts.job_timeline(agents, rows.frame("model_calls"), rows.frame("tool_calls"), path, t0),
        key="job.timeline",
    )
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Stages")
        st.dataframe(_stages(job, path, names), key="job.stages", hide_index=True, width="stretch")
    with right:
        st.subheader("Swarm vs single")
        _comparison(uid)
    ledger_tab, messages_tab = st.tabs(["Tool-call ledger", "Messages"])
    with ledger_tab:
        _tool_ledger(rows, names)
    with messages_tab:
        _messages(rows, names)


def render() -> None:
    jobs = data.jobs()
    if jobs.empty:
        st.title("Job")
        st.info("The ledger has no jobs yet. Run one: `kswarm run examples/quickstart.yaml`.")
        return
    layout.live(_job_section, _pick_job(jobs), key="job.live")


if __name__ == "__main__":
    render()
