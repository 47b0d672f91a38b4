"""Every query of the dashboard, in one place, cached for a few seconds.

The dashboard reads the ledger only (SQLite on a laptop, PostgreSQL in a cluster: the URL from
``KSWARM_DATABASE_URL`` or under ``KSWARM_HOME``, as every kswarm part resolves it), through a
synchronous SQLAlchemy engine: Streamlit reruns scripts in threads, and a plain engine with a
small pool is the simplest correct thing there. Each function returns plain values or pandas
frames and is wrapped in ``st.cache_data`` with a short TTL, so a page that reruns every few
seconds for many viewers costs the database one query per TTL, and a live job still moves.
"""

from __future__ import annotations

import json
import logging
import os
import types
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session

from kswarm.ledger import engines, models
from kswarm.telemetry import critical_path as cp
from kswarm.telemetry import ledger_spans
from kswarm.tools import server_of

__all__ = [
    "PHASES",
    "JobRows",
    "agent_messages",
    "comparison",
    "database_url",
    "job_path",
    "job_rows",
    "jobs",
    "live_in_flight",
    "namespaces",
    "pool_calls",
    "rollout_samples",
    "server_summary",
    "tool_server_calls",
    "toolserver_status",
]

log = logging.getLogger(__name__)

LIVE_TTL = 2.0
"""Seconds a query result is reused: short, so a running job moves on screen."""
HISTORY_TTL = 30.0
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
PREVIEW_CHARS = 300


def database_url() -> str:
    return engines.default_url()


@st.cache_resource
def _engine(url: str) -> Engine:
    return create_engine(engines.sync_url(url), pool_size=4, max_overflow=4, pool_pre_ping=True)


def _session() -> Session:
    return Session(_engine(database_url()))


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


# ---------------------------------------------------------------------- jobs


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def namespaces() -> list[str]:
    with _session() as s:
        return sorted(str(n) for (n,) in s.execute(select(models.Job.namespace).distinct()))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def jobs(namespace: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Recent jobs, newest first, with their outcome and a duration for running ones too."""
    J = models.Job
    q = select(J).order_by(J.created_at.desc()).limit(limit)
    if namespace:
        q = q.where(J.namespace == namespace)
    now = datetime.now(UTC)
    rows = []
    with _session() as s:
        for (j,) in s.execute(q):
            report = j.report or {}
            started = ledger_spans.timestamp(j.started_at)
            duration = j.wall_seconds
            if duration is None and started is not None:  # still running (or never finished)
                duration = now.timestamp() - started
            rows.append(
                {
                    "uid": j.uid,
                    "namespace": j.namespace,
                    "name": j.name,
                    "mode": j.mode,
                    "phase": j.phase,
                    "created": j.created_at,
                    "duration_s": duration,
                    "critical_steps": j.critical_steps,
                    "total_steps": j.total_steps,
                    "speedup": j.speedup,
                    "subagents": (report.get("subagents") or {}).get("spawned"),
                    "tokens_in": j.tokens_input,
                    "tokens_out": j.tokens_output,
                    "quality": j.quality,
                    "reason": j.reason,
                }
            )
    df = pd.DataFrame(rows, columns=_JOB_COLUMNS)
    df["created"] = _utc(df["created"])
    return df


_JOB_COLUMNS = [
    "uid",
    "namespace",
    "name",
    "mode",
    "phase",
    "created",
    "duration_s",
    "critical_steps",
    "total_steps",
    "speedup",
    "subagents",
    "tokens_in",
    "tokens_out",
    "quality",
    "reason",
]


@dataclass
class JobRows:
    """One job's ledger rows as plain dicts (cacheable, picklable)."""

    job: dict[str, Any]
    agents: list[dict[str, Any]] = field(default_factory=list)
    model_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def frame(self, name: str) -> pd.DataFrame:
        df = pd.DataFrame(getattr(self, name))
        for col in ("started_at", "finished_at"):
            if col in df:
                df[col] = _utc(df[col])
        return df


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in skip}


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def job_rows(uid: str) -> JobRows | None:
    """The job, its agents, model-call attempts and tool calls (arguments and results cut)."""
    M = models
    with _session() as s:
        job = s.get(M.Job, uid)
        if job is None:
            return None
        rows = JobRows(job=_row(job))
        rows.agents = [
            _row(a, ("system_prompt",))
            for (a,) in s.execute(select(M.Agent).where(M.Agent.job_uid == uid))
            if a.role != "template"
        ]
        rows.model_calls = [
            _row(c) for (c,) in s.execute(select(M.ModelCall).where(M.ModelCall.job_uid == uid))
        ]
        for (t,) in s.execute(select(M.ToolCall).where(M.ToolCall.job_uid == uid)):
            r = _row(t)
            r["arguments"], r["result"] = _preview(r["arguments"]), _preview(r["result"])
            rows.tool_calls.append(r)
    return rows


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def job_path(uid: str) -> cp.CriticalPath | None:
    """The job's critical path, rebuilt from its ledger rows (no collector needed)."""
    rows = job_rows(uid)
    if rows is None:
        return None
    ns = types.SimpleNamespace
    records = ledger_spans.records_from_ledger(
        ns(**rows.job),
        [ns(**a) for a in rows.agents],
        [ns(**c) for c in rows.model_calls],
        [ns(**t) for t in rows.tool_calls],
    )
    return cp.critical_path(records, uid)


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def agent_messages(agent_id: str, limit: int = 200) -> list[dict[str, Any]]:
    M = models.Message
    q = select(M.content).where(M.agent_id == agent_id).order_by(M.seq).limit(limit)
    with _session() as s:
        return [dict(c) for (c,) in s.execute(q)]


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def comparison(uid: str) -> pd.DataFrame | None:
    """This job and the newest successful run of the same task in the other mode (swarm or
    single), when the job succeeded and such a run exists."""
    J = models.Job
    with _session() as s:
        job = s.get(J, uid)
        if job is None or job.phase != "Succeeded":
            return None
        task = (job.spec or {}).get("task")
        q = (
            select(J)
            .where(J.name == job.name, J.namespace == job.namespace, J.phase == "Succeeded")
            .order_by(J.created_at.desc())
            .limit(200)
        )
        found: dict[str, Any] = {}
        for (j,) in s.execute(q):
            if (j.spec or {}).get("task") == task:
                found.setdefault(j.mode, j)
        found[job.mode] = job  # the job itself stands for its own mode
    if not {"swarm", "single"} <= set(found):
        return None
    rows = []
    for mode in ("swarm", "single"):
        j = found[mode]
        rows.append(
            {
                "mode": mode,
                "uid": j.uid,
                "phase": j.phase,
                "critical_steps": j.critical_steps,
                "total_steps": j.total_steps,
                "wall_s": j.wall_seconds,
                "tokens": (j.tokens_input or 0) + (j.tokens_output or 0),
                "quality": j.quality,
            }
        )
    return pd.DataFrame(rows).set_index("mode")


# ---------------------------------------------------------------------- pools


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def pool_calls(window_seconds: float | None) -> pd.DataFrame:
    """Model-call attempts of every pool started in the last ``window_seconds`` (None: all)."""
    M = models.ModelCall
    q = select(
        M.pool,
        M.replica,
        M.status,
        M.latency_seconds,
        M.ttft_seconds,
        M.started_at,
        M.input_tokens,
        M.output_tokens,
    )
    if window_seconds is not None:
        q = q.where(M.started_at >= datetime.now(UTC) - timedelta(seconds=window_seconds))
    with _session() as s:
        rows = s.execute(q.order_by(M.started_at)).all()
    df = pd.DataFrame(rows, columns=_CALL_COLUMNS)
    df["started_at"] = _utc(df["started_at"])
    df["replica"] = df["replica"].fillna("(none)")
    return df


_CALL_COLUMNS = [
    "pool",
    "replica",
    "status",
    "latency_s",
    "ttft_s",
    "started_at",
    "tokens_in",
    "tokens_out",
]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def live_in_flight() -> dict[str, float]:
    """``kswarm_model_calls_in_flight`` per pool, summed over the workers' metrics endpoints
    named in ``KSWARM_METRICS_URLS`` (comma-separated); empty when unset or unreachable."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    urls = [u.strip() for u in os.environ.get("KSWARM_METRICS_URLS", "").split(",")]
    for url in filter(None, urls):
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                text = r.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            if family.name == "kswarm_model_calls_in_flight":
                for sample in family.samples:
                    pool = sample.labels.get("pool", "")
                    out[pool] = out.get(pool, 0.0) + sample.value
    return out


# ---------------------------------------------------------------------- tool servers

TOOL_CALL_COLUMNS = [
    "server",
    "tool",
    "job_uid",
    "key",
    "status",
    "side_effects",
    "duration_s",
    "started_at",
    "approval",
]
AWAITING = "awaiting"
"""The status of a call that waits for a person's decision (``Ledger.await_approval``)."""


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def tool_server_calls(window_seconds: float | None) -> pd.DataFrame:
    """Calls of MCP tools (any with a server) started in the last ``window_seconds`` (None:
    all). Rows written before the ledger had a ``server`` column take it from the tool's name
    (``SERVER__TOOL``), unless they were refused (a name no server offers, as a model may
    invent one, names no server)."""
    T = models.ToolCall
    q = select(
        T.server,
        T.tool,
        T.job_uid,
        T.key,
        T.status,
        T.side_effects,
        T.duration_seconds,
        T.started_at,
        T.approval,
    ).where(
        T.server.is_not(None)
        # Older rows, from the name; a refused call of no server's tool is no server's call.
        | (T.tool.contains("__", autoescape=True) & (T.status != "refused"))
    )
    if window_seconds is not None:
        q = q.where(T.started_at >= datetime.now(UTC) - timedelta(seconds=window_seconds))
    with _session() as s:
        rows = s.execute(q.order_by(T.started_at)).all()
    df = pd.DataFrame(rows, columns=TOOL_CALL_COLUMNS)
    df["server"] = [
        srv if isinstance(srv, str) and srv else server_of(str(tool))
        for srv, tool in zip(df["server"], df["tool"], strict=True)
    ]
    df = df[df["server"] != ""].reset_index(drop=True)
    df["started_at"] = _utc(df["started_at"])
    df["denied"] = [isinstance(a, dict) and a.get("approved") is False for a in df["approval"]]
    return df.drop(columns="approval")


SERVER_SUMMARY_COLUMNS = [
    "server",
    "calls",
    "errors",
    "error %",
    "p50 latency (s)",
    "p95 latency (s)",
    "side-effecting calls",
    "pending approvals",
    "denied",
    "tools",
]


def server_summary(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per tool server: calls, errors (failed calls: the server's error answers, a
    server that stayed down) and their share, latency percentiles of the calls that ran, calls
    of tools with side effects, calls waiting for a person's decision and calls denied. A denied
    call and a refused one (never sent to the server) count as calls but not as errors."""
    rows = []
    for server, part in calls.groupby("server", sort=True):
        ran = part["status"].isin(["succeeded", "failed"]) & ~part["denied"]
        errors = int((ran & (part["status"] == "failed")).sum())
        done = part.loc[ran, "duration_s"].dropna()
        rows.append(
            {
                "server": server,
                "calls": len(part),
                "errors": errors,
                "error %": round(100 * errors / len(part), 1),
                "p50 latency (s)": round(float(done.quantile(0.5)), 4) if len(done) else None,
                "p95 latency (s)": round(float(done.quantile(0.95)), 4) if len(done) else None,
                "side-effecting calls": int((part["side_effects"] == True).sum()),  # noqa: E712
                "pending approvals": int((part["status"] == AWAITING).sum()),
                "denied": int(part["denied"].sum()),
                "tools": part["tool"].nunique(),
            }
        )
    return pd.DataFrame(rows, columns=SERVER_SUMMARY_COLUMNS)


STATUS_COLUMNS = ["namespace", "server", "ready", "reason", "message", "tools", "tool names"]


def toolserver_rows(items: list[dict[str, Any]]) -> pd.DataFrame:
    """ToolServer objects (as the API returns them) as rows: Ready, why, and the tool list."""
    rows = []
    for item in items:
        meta, status = item.get("metadata") or {}, item.get("status") or {}
        conditions: list[dict[str, Any]] = status.get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
        tools = [str(t.get("name")) for t in status.get("tools") or []]
        rows.append(
            {
                "namespace": meta.get("namespace"),
                "server": meta.get("name"),
                "ready": ready.get("status", "Unknown"),
                "reason": ready.get("reason"),
                "message": ready.get("message"),
                "tools": len(tools),
                "tool names": ", ".join(tools),
            }
        )
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


@st.cache_data(ttl=HISTORY_TTL, show_spinner=False)
def toolserver_status() -> pd.DataFrame | None:
    """Every ToolServer as the operator's status describes it, read from the cluster the
    dashboard runs in (or the kubeconfig's); ``None`` when no cluster answers."""
    from kubernetes import client, config  # only this page needs it

    try:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            # KUBECONFIG as it is now (the library reads it once, when first imported).
            path = os.environ.get("KUBECONFIG") or None
            config.load_kube_config(config_file=path)  # type: ignore[no-untyped-call]
        api = client.CustomObjectsApi()
        found: Any = api.list_cluster_custom_object(
            "kswarm.dev", "v1alpha1", "toolservers", _request_timeout=3
        )
    except Exception as e:  # no kubeconfig, cluster away, no CRD, no permission: not shown
        log.info("ToolServers not read from the cluster: %s: %s", type(e).__name__, e)
        return None
    return toolserver_rows(list(found.get("items") or []))


# ---------------------------------------------------------------------- rollouts

ROLLOUT_COLUMNS = [
    "group",
    "group_name",
    "sample",
    "epoch",
    "epochs",
    "lambda_start",
    "lambda_end",
    "uid",
    "phase",
    "created",
    "critical_steps",
    "lambda_aux",
    "r_parallel",
    "r_finish",
    "success",
    "quality",
    "reward",
    "advantage",
    "serial_collapse",
    "best_critical_steps",
]


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def rollout_samples(limit: int = 5000) -> pd.DataFrame:
    """Every scored rollout sample (a job whose report holds ``rollout``), newest first."""
    J = models.Job
    q = select(J).where(J.uid.like("%-s%")).order_by(J.created_at.desc()).limit(limit)
    rows = []
    with _session() as s:
        for (j,) in s.execute(q):
            report = j.report or {}
            rollout = report.get("rollout")
            if not isinstance(rollout, dict):
                continue
            terms = rollout.get("terms") or {}
            collapse = report.get("collapse") or {}
            lam = rollout.get("lambda") or {}
            rows.append(
                {
                    "group": rollout.get("group"),
                    "group_name": rollout.get("groupName"),
                    "sample": rollout.get("sample"),
                    "epoch": rollout.get("epoch"),
                    "epochs": rollout.get("epochs"),
                    "lambda_start": lam.get("start"),
                    "lambda_end": lam.get("end"),
                    "uid": j.uid,
                    "phase": j.phase,
                    "created": j.created_at,
                    "critical_steps": j.critical_steps,
                    **{k: terms.get(k) for k in ROLLOUT_COLUMNS[11:18]},
                    "serial_collapse": bool(collapse.get("serialCollapse")),
                    "best_critical_steps": collapse.get("bestCriticalSteps"),
                }
            )
    df = pd.DataFrame(rows, columns=ROLLOUT_COLUMNS)
    df["created"] = _utc(df["created"])
    return df
