"""Human approval on Kubernetes: the SwarmJob's ``WaitingForApproval`` status, and decisions
made with ``kubectl annotate``.

**The status.** While tool calls of a running job wait for a person (their tool is marked
``requireApproval`` by its ToolServer or by the job's ``spec.requireApproval``), each pass of the
job's status daemon writes them into ``status.pendingApprovals`` (call, tool, agent, since) and
sets the condition ``WaitingForApproval`` to True; once they are decided the list is empty and
the condition False (reason ``Decided``); a job that ends while calls wait ends with the list
empty and the condition False for the job's own reason. A job whose calls never waited gets
neither. The waiting calls come from the ledger's ``awaiting`` rows, not from the agents'
``waiting_for_approval`` queries: that is one indexed read of one table per pass, whatever the
number of sub-agents, where the queries would be one per agent workflow (up to 300), each a
workflow task on a worker, which may have to replay the agent's history to answer; the ledger
also knows each call's tool and when it was made, which the queries do not.

**Decisions by annotation.** ``kubectl annotate`` on the SwarmJob (``--overwrite`` for a
second decision):

* ``kswarm.dev/approve: "CALL[,CALL...]"``: approve these calls; ``*`` approves every call
  waiting now;
* ``kswarm.dev/deny: "CALL=REASON"``: deny a call, with the reason the model reads (required,
  as ``kswarm deny --reason``); several denials one per line; ``*=REASON`` denies every call
  waiting now; a call named in either annotation is decided as named, whatever ``*`` says;
* ``kswarm.dev/decided-by: NAME`` (optional): who decides, as the ledger records it; without
  it, the field manager that wrote the annotation (``kubectl-annotate``, ``kubectl-edit`` ...),
  else ``kubectl``.

``CALL`` is a key of ``status.pendingApprovals`` (``JOB/AGENT/STEP/INDEX``), or the same without
the job's uid (``AGENT/STEP/INDEX``). The operator sends each decision to the agent's workflow
(the ``decide_tool_call`` signal, as ``kswarm approve`` does), posts an Event per call
(``ToolCallApproved`` / ``ToolCallDenied``) and removes the annotations. A call that is not
waiting (a typo, one decided already, one of another job) or an entry it cannot read gets a
Warning Event ``ApprovalNotApplied`` naming it and changes nothing; the annotations go all the
same. While Temporal or the ledger cannot be reached, the annotations stay and the status
daemon tries again at each pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf

from kswarm.approving import decide
from kswarm.errors import LedgerError
from kswarm.operator import status as job_status
from kswarm.operator.runtime import Runtime, runtime_of
from kswarm.workflows.approvals import ToolCallDecision, agent_workflow_id

__all__ = [
    "APPROVE",
    "CONDITION",
    "DECIDED_BY",
    "DENY",
    "Request",
    "apply_decisions",
    "decider",
    "final_fields",
    "has_decisions",
    "parse_requests",
    "pending_calls",
    "register",
    "status_fields",
]

log = logging.getLogger(__name__)

APPROVE = "kswarm.dev/approve"
DENY = "kswarm.dev/deny"
DECIDED_BY = "kswarm.dev/decided-by"
ANNOTATIONS = (APPROVE, DENY, DECIDED_BY)
CONDITION = "WaitingForApproval"
PENDING_LIMIT = 256
"""``status.pendingApprovals`` lists at most this many calls (the CRD's maxItems)."""
MESSAGE_CALLS = 10
"""Calls named in the condition's message; the rest are counted."""
RETRY_MEMO = "approvals_undelivered"
"""Attribute of an object's kopf memo: decisions on it could not be delivered yet."""
SENT_MEMO = "approvals_sent"
"""Attribute of an object's kopf memo: the calls decided by annotation."""
ALL = "*"


@dataclass(frozen=True)
class Request:
    """One decision an annotation asks for."""

    call: str
    """A full call key, or ``*`` for every waiting call."""
    approved: bool
    reason: str = ""


@dataclass
class Parsed:
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def has_decisions(annotations: Mapping[str, str], **_: Any) -> bool:
    """Whether an object carries a decision annotation (kopf's ``when`` filter)."""
    return bool(annotations.get(APPROVE) or annotations.get(DENY))


def _full(uid: str, call: str) -> str:
    return call if call == ALL or call.startswith(f"{uid}/") else f"{uid}/{call}"


def parse_requests(annotations: Mapping[str, str], uid: str) -> Parsed:
    """The decisions ``annotations`` ask for on job ``uid``, and what cannot be read in them."""
    out = Parsed()
    for raw in (annotations.get(APPROVE) or "").replace("\n", ",").split(","):
        call = raw.strip()
        if call:
            out.requests.append(Request(_full(uid, call), True))
    for raw in (annotations.get(DENY) or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        call, sep, reason = line.partition("=")
        call, reason = call.strip(), reason.strip()
        if not sep or not reason or not call:
            out.errors.append(f"{DENY}: {line!r} is not CALL=REASON (the reason is required)")
            continue
        out.requests.append(Request(_full(uid, call), False, reason))
    for r in out.requests:
        if r.call == ALL:
            continue
        try:
            agent_workflow_id(r.call)
        except ValueError as e:
            out.errors.append(f"{APPROVE if r.approved else DENY}: {e}")
    out.requests = [r for r in out.requests if r.call == ALL or _well_formed(r.call)]
    return out


def _well_formed(call: str) -> bool:
    try:
        agent_workflow_id(call)
    except ValueError:
        return False
    return True


def decider(meta: Mapping[str, Any]) -> str:
    """Who decides: ``kswarm.dev/decided-by``, else the field manager that last wrote a decision
    annotation, else ``kubectl``."""
    annotations = meta.get("annotations") or {}
    named = str(annotations.get(DECIDED_BY) or "").strip()
    if named:
        return named
    managers = [
        str(entry.get("manager") or "")
        for entry in meta.get("managedFields") or []
        if _owns_decision(entry.get("fieldsV1") or {})
    ]
    return next((m for m in reversed(managers) if m), "kubectl")


def _owns_decision(fields: Mapping[str, Any]) -> bool:
    owned = (fields.get("f:metadata") or {}).get("f:annotations") or {}
    return any(f"f:{key}" in owned for key in (APPROVE, DENY))


# --------------------------------------------------------------------------- decisions


async def pending_calls(rt: Runtime, uid: str) -> list[Any] | None:
    """The job's calls waiting for a decision now (ledger rows); ``None`` while the ledger is
    away."""
    ledger = await rt.ledger()
    if ledger is None:
        return None
    try:
        return await ledger.awaiting_tool_calls(uid)
    except LedgerError as e:
        log.warning("ledger read failed job_uid=%s error=%r", uid, str(e))
        return None


async def apply_decisions(
    rt: Runtime,
    body: Mapping[str, Any],
    uid: str,
    post: Any,
    sent: set[str],
) -> bool:
    """Carry out the decision annotations of ``body``; ``True`` once they are dealt with (sent,
    or refused with an Event), ``False`` when they must be tried again (Temporal or the ledger
    away). ``post(type, reason, message)`` posts an Event on the job; ``sent`` holds the calls
    decided already (a watch event older than the annotations' removal repeats them: they are
    skipped silently)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    parsed = parse_requests(annotations, uid)
    for error in parsed.errors:
        post("Warning", "ApprovalNotApplied", error)
    if not parsed.requests:
        return True
    rows = await pending_calls(rt, uid)
    if rows is None:
        return False
    waiting = {str(r.key): str(r.tool) for r in rows if str(r.key) not in sent}
    who = decider(meta)
    decisions: dict[str, ToolCallDecision] = {}
    for r in sorted(parsed.requests, key=lambda r: r.call == ALL):  # named calls before '*'
        calls = list(waiting) if r.call == ALL else [r.call]
        if r.call == ALL and not calls and not sent:
            post("Warning", "ApprovalNotApplied", "'*': no tool call of the job waits now")
        for call in calls:
            if call in sent:
                continue
            if call not in waiting:
                post(
                    "Warning",
                    "ApprovalNotApplied",
                    f"tool call {call!r} is not waiting for approval; waiting: "
                    f"{', '.join(waiting) or 'none'}",
                )
                continue
            decisions.setdefault(call, ToolCallDecision(call, r.approved, who, r.reason))
    try:
        await asyncio.gather(*(decide(rt.client, uid, c, d) for c, d in decisions.items()))
    except Exception as e:  # Temporal away: the annotations stay, tried again
        log.warning("decisions not delivered job_uid=%s error=%s: %s", uid, type(e).__name__, e)
        post("Warning", "ApprovalNotDelivered", f"{type(e).__name__}: {e}; trying again")
        return False
    sent.update(decisions)
    for call, d in sorted(decisions.items()):
        why = f": {d.reason}" if d.reason else ""
        post(
            "Normal",
            "ToolCallApproved" if d.approved else "ToolCallDenied",
            f"{call} ({waiting[call]}) {'approved' if d.approved else 'denied'} by {d.by}{why}",
        )
        log.info(
            "tool call decided job_uid=%s call=%s approved=%s by=%s",
            uid,
            call,
            d.approved,
            d.by,
        )
    return True


async def on_annotations(
    body: kopf.Body,
    uid: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Event handler: a decision annotation appeared on a SwarmJob."""
    rt = runtime_of(memo)

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    done = await apply_decisions(rt, body, uid, post, _sent(memo))
    setattr(memo, RETRY_MEMO, not done)
    if done:
        for key in ANNOTATIONS:
            if key in (body.get("metadata", {}).get("annotations") or {}):
                patch.metadata.annotations[key] = None


async def retry_undelivered(rt: Runtime, body: kopf.Body, uid: str, memo: Any) -> None:
    """From the status daemon: try again the decisions the event handler could not deliver."""
    if not getattr(memo, RETRY_MEMO, False) or not has_decisions(
        body.get("metadata", {}).get("annotations") or {}
    ):
        return

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    try:
        if await apply_decisions(rt, body, uid, post, _sent(memo)):
            meta = body.get("metadata") or {}
            gone = {k: None for k in ANNOTATIONS if k in (meta.get("annotations") or {})}
            await rt.api.patch_annotations(
                "kswarm.dev", "v1alpha1", "swarmjobs", meta["namespace"], meta["name"], gone
            )
            setattr(memo, RETRY_MEMO, False)
    except Exception as e:  # the status pass goes on; tried again at the next
        log.warning("decisions not applied job_uid=%s error=%s: %s", uid, type(e).__name__, e)


def _sent(memo: Any) -> set[str]:
    """The calls of this object decided by annotation (kopf keeps a memo per object)."""
    sent: set[str] | None = getattr(memo, SENT_MEMO, None)
    if sent is None:
        sent = set()
        setattr(memo, SENT_MEMO, sent)
    return sent


def register(registry: kopf.OperatorRegistry) -> None:
    """The annotation handler, on ``registry``: every watch event of a SwarmJob that carries a
    decision annotation (an event handler, not a change handler: kopf leaves annotations of
    its own storage prefix, ``kswarm.dev/``, out of the changes it tracks)."""
    kopf.on.event(
        "kswarm.dev", "v1alpha1", "swarmjobs", id="approvals", registry=registry, when=_decided
    )(on_annotations)


def _decided(annotations: kopf.Annotations, type: str | None = None, **_: Any) -> bool:
    return type != "DELETED" and has_decisions(annotations)


# --------------------------------------------------------------------------- the status


def _item(row: Any) -> dict[str, Any]:
    agent = str(row.agent_id).split("/", 1)[-1]
    item: dict[str, Any] = {"call": str(row.key), "tool": str(row.tool), "agent": agent}
    if isinstance(row.started_at, datetime):
        item["since"] = job_status.timestamp(row.started_at)
    return item


def status_fields(
    rows: Sequence[Any],
    old: Mapping[str, Any],
    *,
    name: str,
    now: datetime,
) -> dict[str, Any]:
    """``pendingApprovals`` and the ``WaitingForApproval`` condition of a running job whose
    calls ``rows`` wait now; nothing for a job none of whose calls ever waited."""
    conditions = old.get("conditions") or []
    had = any(c.get("type") == CONDITION for c in conditions) or bool(old.get("pendingApprovals"))
    if not rows and not had:
        return {}
    items = [_item(r) for r in rows[:PENDING_LIMIT]]
    if items:
        named = ", ".join(f"{i['call']} ({i['tool']})" for i in items[:MESSAGE_CALLS])
        more = f" and {len(rows) - MESSAGE_CALLS} more" if len(rows) > MESSAGE_CALLS else ""
        update = {
            "type": CONDITION,
            "status": "True",
            "reason": CONDITION,
            "message": f"{len(rows)} tool call(s) wait for a person's decision: {named}{more}; "
            f"kubectl annotate sj {name} {APPROVE}=CALL (or {DENY}=CALL=REASON)",
        }
    else:
        update = {
            "type": CONDITION,
            "status": "False",
            "reason": "Decided",
            "message": "no tool call waits for a decision",
        }
    return {
        "pendingApprovals": items,
        "conditions": job_status.set_conditions(conditions, [update], now=now, generation=None),
    }


def final_fields(
    final: Mapping[str, Any], old: Mapping[str, Any], *, now: datetime, still_waiting: bool
) -> dict[str, Any]:
    """What a job's final status adds: no call waits any more. ``still_waiting``: the ledger
    still holds ``awaiting`` rows of the job, which ended while they waited (``JobEnded``);
    otherwise every call was decided (``Decided``), also when the job ended before a status
    pass saw the decisions."""
    conditions: Iterable[Mapping[str, Any]] = final.get("conditions") or []
    cond = next((c for c in conditions if c.get("type") == CONDITION), None)
    if cond is None and not old.get("pendingApprovals"):
        return {}
    update = {
        "type": CONDITION,
        "status": "False",
        "reason": "JobEnded" if still_waiting else "Decided",
        "message": f"the job ended ({final.get('phase')}) while tool calls waited for a decision"
        if still_waiting
        else "no tool call waits for a decision",
    }
    return {
        "pendingApprovals": [],
        "conditions": job_status.set_conditions(conditions, [update], now=now, generation=None),
    }
