"""``kswarm approve JOB CALL`` and ``kswarm deny JOB CALL --reason ...``: a person's decision on a
tool call that waits for one.

``CALL`` is the call's key as the ledger and the job's status show it
(``JOB/AGENT/STEP/INDEX``); the decision goes to the workflow of that agent as the
``decide_tool_call`` signal, on the Temporal server of ``KSWARM_TEMPORAL_ADDRESS``. The first
decision on a call holds; who decided and when is written to the call's ledger row.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from temporalio.client import Client

from kswarm import looping
from kswarm.config import Settings
from kswarm.workflows.approvals import DECIDE_SIGNAL, ToolCallDecision, agent_workflow_id

__all__ = ["decide", "register", "send", "workflow_of"]


def workflow_of(job: str, call: str) -> str:
    """The workflow id that decides ``call`` of ``job`` (a job uid); ``ValueError`` naming
    what is wrong."""
    if not call.startswith(f"{job}/"):
        raise ValueError(f"call {call!r} is not a call of job {job!r} (JOB/AGENT/STEP/INDEX)")
    return agent_workflow_id(call)


async def decide(client: Client, job: str, call: str, decision: ToolCallDecision) -> None:
    """Send ``decision`` on ``call`` of ``job`` (a job uid) to the agent's workflow."""
    handle = client.get_workflow_handle(workflow_of(job, call))
    await handle.signal(DECIDE_SIGNAL, decision)


async def send(
    job: str, call: str, decision: ToolCallDecision, settings: Settings | None = None
) -> None:
    """Connect to the Temporal server of ``settings`` (default: from the environment) and send
    ``decision`` on ``call`` of ``job``: what ``kswarm approve``/``deny`` and the dashboard's
    Approve and Deny buttons do."""
    settings = settings or Settings.from_env()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    await decide(client, job, call, decision)


def _command(ns: argparse.Namespace) -> int:
    decision = ToolCallDecision(
        call=ns.call,
        approved=ns.command == "approve",
        by=ns.by or getpass.getuser(),
        reason=getattr(ns, "reason", "") or "",
    )

    try:
        workflow_of(ns.job, ns.call)
    except ValueError as e:
        print(f"kswarm: error: {e}", file=sys.stderr)
        return 2
    try:
        looping.run(send(ns.job, ns.call, decision))
    except Exception as e:  # no such workflow, Temporal away
        print(f"kswarm: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"{ns.call}: {'approved' if decision.approved else 'denied'} by {decision.by}")
    return 0


def register(sub: Any) -> None:
    """Add ``approve`` and ``deny`` to the ``kswarm`` command's subparsers."""
    for name, what in (("approve", "let"), ("deny", "refuse")):
        p = sub.add_parser(name, help=f"{what} a tool call that waits for a person's approval")
        p.add_argument("job", help="the job's uid")
        p.add_argument("call", help="the call, JOB/AGENT/STEP/INDEX as the ledger keys it")
        p.add_argument("--by", help="who decides (default: the current user)")
        if name == "deny":
            p.add_argument("--reason", required=True, help="why; the model reads it")
        p.set_defaults(func=_command)
