"""What a SwarmJob's status says, computed from what was observed: pure functions, no I/O.

The operator rebuilds the status on every pass from the workflow (its ``status`` query, its
description, its result) and the ledger (its counters), never by editing the previous status.
Counters go through :func:`kswarm.workflows.report.build_report`, so the CR status, ``kswarm run
--json`` and the dashboard count tool calls the same way.

Only keys of the CRD's status schema are written: the API server prunes any other key, and a
pruned key would look changed on every pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from kswarm.ledger import JobCounters
from kswarm.workflows import JobStatus, SwarmJobResult
from kswarm.workflows.report import build_report

__all__ = [
    "RESULT_LIMIT",
    "TERMINAL_PHASES",
    "Condition",
    "changed_fields",
    "final_status",
    "live_status",
    "reason_code",
    "result_from_job_status",
    "set_conditions",
    "timestamp",
    "truncate",
]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Cancelled"})
RESULT_LIMIT = 4096
"""``status.result`` holds at most this many characters (the CRD's maxLength)."""

Condition = dict[str, Any]


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Kubernetes writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate(text: str, limit: int = RESULT_LIMIT) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def reason_code(reason: str | None, default: str) -> str:
    """``"DeadlineExceeded: spec.limits..."`` -> ``"DeadlineExceeded"``: a CamelCase code."""
    if not reason:
        return default
    head = reason.split(":", 1)[0].strip()
    return head if head.isidentifier() else default


def set_conditions(
    old: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Merge ``updates`` (each with type, status, reason, message) into ``old`` by type.

    ``lastTransitionTime`` moves only when a condition's status changes; conditions not named
    in ``updates`` are kept as they are.
    """
    merged: dict[str, Condition] = {str(c["type"]): dict(c) for c in old or () if "type" in c}
    for upd in updates:
        kind = str(upd["type"])
        prev = merged.get(kind)
        cond: Condition = {
            "type": kind,
            "status": upd["status"],
            "reason": upd.get("reason", ""),
            "message": upd.get("message", ""),
        }
        if prev is not None and prev.get("status") == cond["status"]:
            cond["lastTransitionTime"] = prev.get("lastTransitionTime", timestamp(now))
        else:
            cond["lastTransitionTime"] = timestamp(now)
        if generation is not None:
            cond["observedGeneration"] = generation
        merged[kind] = cond
    return list(merged.values())


def result_from_job_status(name: str, uid: str, js: JobStatus) -> SwarmJobResult:
    """The live counters of a running job in the shape of a result, for :func:`build_report`."""
    return SwarmJobResult.of(
        name=name,
        uid=uid,
        phase="Running",
        reason=js.reason,
        critical_steps=js.critical_steps,
        total_steps=js.total_steps,
        stages=list(js.stages),
        subagents=(js.subagents_spawned, js.subagents_succeeded, js.subagents_failed),
    )


def _counted(report: Mapping[str, Any], with_counters: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "criticalSteps": report["criticalSteps"],
        "totalSteps": report["totalSteps"],
        "speedup": report["speedup"],
        "subagents": dict(report["subagents"]),
    }
    if with_counters:
        out["toolCalls"] = dict(report["toolCalls"])
        out["llmCalls"] = report["llmCalls"]
        out["tokens"] = dict(report["tokens"])
    return out


def live_status(name: str, uid: str, js: JobStatus, counters: JobCounters | None) -> dict[str, Any]:
    """Status fields of a running job; ``counters`` is ``None`` while the ledger is away."""
    report = build_report(result_from_job_status(name, uid, js), counters or JobCounters())
    out = _counted(report, counters is not None)
    out["subagents"]["running"] = js.subagents_running
    out["phase"] = "Running"
    return out


def final_status(
    result: SwarmJobResult,
    counters: JobCounters,
    *,
    old_conditions: Iterable[Mapping[str, Any]] | None,
    finished_at: datetime,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The whole status of a job that has ended, from its result and the ledger's counters."""
    report = build_report(result, counters)
    out = _counted(report, True)
    out["subagents"]["running"] = 0
    phase = result.phase if result.phase in TERMINAL_PHASES else "Failed"
    out["phase"] = phase
    out["finishedAt"] = timestamp(finished_at)
    out["result"] = truncate(result.result or "")
    out["wallSeconds"] = report["wallSeconds"]
    if report["modelSeconds"] is not None:
        out["modelSeconds"] = report["modelSeconds"]
    out["stages"] = report["stages"][:1000]
    if result.quality is not None:
        out["quality"] = result.quality
    if phase == "Succeeded":
        summary = (
            f"{result.critical_steps} critical steps, {result.total_steps} total steps, "
            f"speedup {result.speedup:g}x, {result.subagents_spawned} sub-agents, "
            f"{report['toolCalls']['total']} tool calls in {result.wall_seconds:.1f}s"
        )
        out["reason"] = "Succeeded"
        updates = [
            {"type": "Running", "status": "False", "reason": "Succeeded", "message": summary},
            {"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": summary},
        ]
    else:
        default = "Cancelled" if phase == "Cancelled" else "Failed"
        code = reason_code(result.reason, default)
        message = result.reason or f"the job ended with phase {phase}"
        out["reason"] = code
        updates = [
            {"type": "Running", "status": "False", "reason": code, "message": message},
            {"type": "Failed", "status": "True", "reason": code, "message": message},
        ]
    out["conditions"] = set_conditions(old_conditions, updates, now=now, generation=generation)
    return out


def changed_fields(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level keys of ``new`` whose value differs from ``old``: a merge patch."""
    old = old or {}
    return {k: v for k, v in new.items() if _plain(old.get(k)) != _plain(v)}


def _plain(value: Any) -> Any:
    """Kopf hands out views and numbers as the server sent them: compare plain values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
