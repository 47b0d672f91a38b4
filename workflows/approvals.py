"""Human approval of tool calls: what a decision is, and the ledger writes around the wait.

A tool marked ``requireApproval`` (on its ToolServer or its tools-file entry) does not run
when the model calls it: the agent's workflow marks the call ``awaiting`` in the ledger
(:meth:`ApprovalActivities.await_approval`) and waits, durably, for the ``decide_tool_call``
signal (``kswarm approve JOB CALL`` / ``kswarm deny JOB CALL --reason ...``). The decision is
written to the call's ledger row with who and when (:meth:`ApprovalActivities.decide_tool_call`);
an approved call then runs as any other, a denied one is a failed call whose error (the denial
and its reason) is the tool's answer to the model. The job's ``deadlineSeconds`` still applies
while it waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

from kswarm.ledger import ToolCallKey
from kswarm.workflows.resources import ActivityResources

__all__ = [
    "DECIDE_SIGNAL",
    "ApprovalActivities",
    "ApprovalRecord",
    "ApprovalWait",
    "ToolCallDecision",
    "agent_workflow_id",
]

DECIDE_SIGNAL = "decide_tool_call"
"""The signal that carries a :class:`ToolCallDecision` to the agent's workflow."""


@dataclass
class ToolCallDecision:
    call: str
    """The call's idempotency key, ``JOB/AGENT/STEP/INDEX`` as the ledger keys it."""
    approved: bool
    by: str
    """Who decided (a user name)."""
    reason: str = ""


@dataclass
class ApprovalWait:
    job_uid: str
    agent_id: str
    step: int
    indexes: list[int]


@dataclass
class ApprovalRecord:
    job_uid: str
    agent_id: str
    step: int
    index: int
    decision: ToolCallDecision
    at: datetime
    """When the workflow received the decision (workflow time, the same on every replay)."""


def agent_workflow_id(call: str) -> str:
    """The workflow that runs the agent of ``call`` (``JOB/AGENT/STEP/INDEX``): the job's own
    for its orchestrator (or single agent), the sub-agent's child workflow otherwise."""
    parts = call.split("/")
    if len(parts) != 4 or not all(parts) or not parts[2].isdigit() or not parts[3].isdigit():
        raise ValueError(f"a call is JOB/AGENT/STEP/INDEX, got {call!r}")
    job, agent = parts[0], parts[1]
    if agent in ("orchestrator", "single"):
        return f"swarmjob-{job}"
    return f"swarmjob-{job}/{agent}"


class ApprovalActivities(ActivityResources):
    """``await_approval`` and ``decide_tool_call``: the ledger's side of a wait."""

    @activity.defn(name="await_approval")
    async def await_approval(self, inp: ApprovalWait) -> None:
        await self.ledger.await_approval(
            [ToolCallKey(inp.job_uid, inp.agent_id, inp.step, i) for i in inp.indexes]
        )

    @activity.defn(name="decide_tool_call")
    async def decide_tool_call(self, inp: ApprovalRecord) -> None:
        d = inp.decision
        await self.ledger.decide_tool_call(
            ToolCallKey(inp.job_uid, inp.agent_id, inp.step, inp.index),
            approved=d.approved,
            by=d.by,
            reason=d.reason,
            at=inp.at,
        )
