"""``kswarm trace JOB``: print a job's critical path, from exported spans or from the ledger.

The ``kswarm`` CLI calls :func:`register` with its subparsers; the handler returns the exit
code: 0 printed, 1 the path disagrees with the ledger's ``criticalSteps`` (a bug worth a
report), 2 the job, the spans file or the ledger is unusable (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from kswarm.errors import KswarmError
from kswarm.telemetry import critical_path as cp
from kswarm.telemetry import ledger_spans
from kswarm.telemetry import spans as spans_mod

__all__ = ["main_trace", "register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``trace``."""
    p = subparsers.add_parser(
        "trace",
        help="print a job's critical path (steps and seconds) from its spans or the ledger",
        description=(
            "Print the critical path of a job: per stage, the orchestrator's steps and the "
            "sub-agent with the most steps. Spans come from --spans (a JSON-lines file written "
            "by python -m kswarm.telemetry.receiving) or are rebuilt from the ledger."
        ),
    )
    p.add_argument("job", metavar="JOB", help="job uid, name, or namespace/name")
    p.add_argument("--spans", metavar="FILE", help="JSON-lines spans instead of the ledger's")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--url",
        help="ledger database URL (default: KSWARM_DATABASE_URL, else SQLite under KSWARM_HOME)",
    )
    p.set_defaults(func=main_trace)


async def _load(ns: argparse.Namespace) -> tuple[Any, list[spans_mod.SpanRecord]]:
    from kswarm.ledger import Ledger

    ledger = await Ledger.connect(ns.url or None)
    try:
        return await ledger_spans.load_job_records(ledger, ns.job)
    finally:
        await ledger.close()


def _as_dict(path: cp.CriticalPath, job: Any) -> dict[str, Any]:
    return {
        "uid": path.job_uid,
        "name": getattr(job, "name", None),
        "criticalSteps": path.steps,
        "ledgerCriticalSteps": getattr(job, "critical_steps", None),
        "totalSteps": path.total_steps,
        "speedup": path.speedup,
        "pathSeconds": round(path.step_path_seconds, 6),
        "longestPathSeconds": round(path.seconds, 6),
        "wallSeconds": round(path.wall_seconds, 6),
        "stages": [
            {
                "stage": s.stage,
                "mainSteps": s.main_steps,
                "subagents": s.subagents,
                "criticalAgent": s.critical_agent,
                "subagentSteps": s.subagent_steps,
                "seconds": s.seconds,
            }
            for s in path.stages
        ],
    }


def main_trace(ns: argparse.Namespace) -> int:
    """Handler of ``kswarm trace``."""
    try:
        job, records = asyncio.run(_load(ns))
        source = "the ledger"
        if ns.spans:
            uid = job.uid if job is not None else ns.job
            records = [
                r
                for r in spans_mod.read_jsonl(ns.spans)
                if r.attributes.get(spans_mod.JOB_UID) == uid
            ]
            source = ns.spans
            if not records:
                raise KswarmError(f"no spans of job {uid!r} in {ns.spans}")
        elif job is None:
            raise KswarmError(f"no job {ns.job!r} in the ledger")
    except KswarmError as e:
        print(f"kswarm: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"kswarm: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 2
    uid = job.uid if job is not None else ns.job
    path = cp.critical_path(records, uid)
    ledger_steps = getattr(job, "critical_steps", None)
    if ns.json:
        print(json.dumps(_as_dict(path, job)))
    else:
        print(
            cp.format_path(
                path, name=getattr(job, "name", None), ledger_steps=ledger_steps, source=source
            )
        )
    return 1 if ledger_steps is not None and ledger_steps != path.steps else 0
