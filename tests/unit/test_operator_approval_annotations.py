"""The operator's side of human approval, as pure functions: what the decision annotations ask
for, who decides, and what the status says while calls wait and after."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from kswarm.operator.approvals import (
    APPROVE,
    CONDITION,
    DECIDED_BY,
    DENY,
    Request,
    decider,
    final_fields,
    has_decisions,
    parse_requests,
    status_fields,
)

UID = "0b6e2a51-9f0e-4f7c-a0a5-3d2e7c1f9a10"
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def row(agent: str, step: int, index: int, tool: str = "time__get_current_time") -> Any:
    """A ledger row as ``Ledger.awaiting_tool_calls`` returns it (a SQL row's attributes)."""
    return SimpleNamespace(
        key=f"{UID}/{agent}/{step}/{index}",
        tool=tool,
        agent_id=f"{UID}/{agent}",
        started_at=datetime(2026, 12, 6, 2, 59, 30, tzinfo=UTC),
    )


def test_approve_takes_a_comma_list_with_or_without_the_job_uid() -> None:
    parsed = parse_requests({APPROVE: f"s001-000/1/0, {UID}/orchestrator/2/1,*"}, UID)
    assert parsed.errors == []
    assert parsed.requests == [
        Request(f"{UID}/s001-000/1/0", True),
        Request(f"{UID}/orchestrator/2/1", True),
        Request("*", True),
    ]


def test_deny_takes_one_call_and_reason_per_line_and_requires_the_reason() -> None:
    value = "single/1/0 = too risky, really\n\nsingle/1/1\n*=stop all"
    parsed = parse_requests({DENY: value}, UID)
    assert parsed.requests == [
        Request(f"{UID}/single/1/0", False, "too risky, really"),
        Request("*", False, "stop all"),
    ]
    assert parsed.errors == [f"{DENY}: 'single/1/1' is not CALL=REASON (the reason is required)"]


@pytest.mark.parametrize("bad", ["single/one/0", "single/1", "/1/0/"])
def test_a_call_that_is_not_agent_step_index_is_an_error_naming_it(bad: str) -> None:
    parsed = parse_requests({APPROVE: bad}, UID)
    assert parsed.requests == []
    assert len(parsed.errors) == 1
    assert parsed.errors[0].startswith(f"{APPROVE}: a call is JOB/AGENT/STEP/INDEX")
    assert bad in parsed.errors[0]


def test_only_a_non_empty_decision_annotation_counts() -> None:
    assert has_decisions({APPROVE: "single/1/0"})
    assert has_decisions({DENY: "single/1/0=no"})
    assert not has_decisions({APPROVE: "", DECIDED_BY: "alice", "other": "x"})


def _managed(manager: str, *keys: str) -> dict[str, Any]:
    owned = {f"f:{k}": {} for k in keys}
    return {"manager": manager, "fieldsV1": {"f:metadata": {"f:annotations": owned}}}


def test_who_decides_is_named_else_the_annotations_manager_else_kubectl() -> None:
    fields = [
        _managed("kubectl-client-side-apply", "note"),
        _managed("kubectl-annotate", APPROVE),
        _managed("kswarm-operator", "kswarm.dev/last-handled-configuration"),
    ]
    assert decider({"annotations": {APPROVE: "x"}, "managedFields": fields}) == "kubectl-annotate"
    named = {"annotations": {APPROVE: "x", DECIDED_BY: " alice "}, "managedFields": fields}
    assert decider(named) == "alice"
    assert decider({"annotations": {DENY: "x=y"}, "managedFields": fields[:1]}) == "kubectl"


def test_waiting_calls_set_the_condition_and_the_list() -> None:
    rows = [row("s001-000", 1, 0), row("s001-001", 1, 0, "time__convert_time")]
    old = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Validated"}]}
    out = status_fields(rows, old, name="clock", now=NOW)
    assert out["pendingApprovals"] == [
        {
            "call": f"{UID}/s001-000/1/0",
            "tool": "time__get_current_time",
            "agent": "s001-000",
            "since": "2026-12-06T02:59:30Z",
        },
        {
            "call": f"{UID}/s001-001/1/0",
            "tool": "time__convert_time",
            "agent": "s001-001",
            "since": "2026-12-06T02:59:30Z",
        },
    ]
    conds = {c["type"]: c for c in out["conditions"]}
    assert conds["Accepted"]["reason"] == "Validated"  # kept
    waiting = conds[CONDITION]
    assert waiting["status"] == "True" and waiting["reason"] == CONDITION
    assert waiting["message"].startswith("2 tool call(s) wait for a person's decision: ")
    assert f"{UID}/s001-001/1/0 (time__convert_time)" in waiting["message"]
    assert f"kubectl annotate sj clock {APPROVE}=CALL" in waiting["message"]


def test_the_condition_clears_once_decided_and_a_job_that_never_waited_gets_nothing() -> None:
    assert status_fields([], {"conditions": []}, name="j", now=NOW) == {}
    waiting = status_fields([row("single", 1, 0)], {}, name="j", now=NOW)
    cleared = status_fields([], waiting, name="j", now=NOW)
    assert cleared["pendingApprovals"] == []
    cond = next(c for c in cleared["conditions"] if c["type"] == CONDITION)
    assert (cond["status"], cond["reason"]) == ("False", "Decided")


def test_the_message_names_ten_calls_and_counts_the_rest() -> None:
    rows = [row(f"s001-{i:03d}", 1, 0) for i in range(13)]
    out = status_fields(rows, {}, name="j", now=NOW)
    cond = next(c for c in out["conditions"] if c["type"] == CONDITION)
    assert cond["message"].count(f"{UID}/") == 10 and " and 3 more;" in cond["message"]
    assert len(out["pendingApprovals"]) == 13


def test_a_job_that_ends_while_calls_wait_ends_with_none_waiting() -> None:
    live = status_fields([row("single", 1, 0)], {}, name="j", now=NOW)
    final = {"phase": "Failed", "conditions": live["conditions"]}
    out = final_fields(final, live, now=NOW, still_waiting=True)
    assert out["pendingApprovals"] == []
    cond = next(c for c in out["conditions"] if c["type"] == CONDITION)
    assert (cond["status"], cond["reason"]) == ("False", "JobEnded")
    assert "(Failed)" in cond["message"]
    empty = {"phase": "Succeeded", "conditions": []}
    assert final_fields(empty, {}, now=NOW, still_waiting=False) == {}


def test_a_job_that_ends_before_a_pass_sees_its_decisions_ends_decided() -> None:
    """The last live pass saw calls waiting; they were decided and the job finished before
    the next pass: the ledger has no waiting call, so the reason is Decided, not JobEnded."""
    live = status_fields([row("single", 1, 0)], {}, name="j", now=NOW)
    final = {"phase": "Succeeded", "conditions": live["conditions"]}
    out = final_fields(final, live, now=NOW, still_waiting=False)
    cond = next(c for c in out["conditions"] if c["type"] == CONDITION)
    assert (cond["status"], cond["reason"]) == ("False", "Decided")
    assert out["pendingApprovals"] == []
