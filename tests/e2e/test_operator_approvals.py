"""A real MCP server's tools through kubectl: a ToolServer object (``mcp-server-time`` over
stdio, from PyPI) and SwarmJobs whose sub-agents call its tool, on the test control plane.

The sub-agents are the simulator's with the ``call_named_tools`` behaviour of the MCP tests (a
task line ``CALL TOOL {args}`` becomes that call), served by a ModelPool with an endpoint on a
replica this module starts. The worker gets the server from the ConfigMap ``kswarm-tools`` the
operator writes (mirrored into its volume as the kubelet would). One job runs straight through;
the other marks the tool ``requireApproval``, waits with ``WaitingForApproval`` and its calls
in ``status.pendingApprovals``, and is decided with ``kubectl annotate``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from operator_support import FAST, SIM_MODEL, apply, conditions, events, get, wait_for

from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess, SwarmBackend

API = "kswarm.dev/v1alpha1"
TIME_SERVER = Path(sys.executable).parent / "mcp-server-time"
BEHAVIOURS = Path(__file__).resolve().parents[1] / "integration" / "tools" / "mcp_behaviours.py"


def _call_named_tools() -> Any:
    spec = importlib.util.spec_from_file_location("mcp_behaviours", BEHAVIOURS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.call_named_tools


class _Served(logging.Handler):
    """Records the worker's "tool servers changed serving=..." lines (it runs in this process)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Setup:
    namespace: str
    server: str
    """The ToolServer's name: its tools are SERVER__TOOL."""
    pool: str


@pytest.fixture(scope="module")
def setup(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, swarm: SwarmBackend
) -> Iterator[Setup]:
    cp = control_plane
    namespace, server = f"approvals-{uuid.uuid4().hex[:4]}", f"time{uuid.uuid4().hex[:6]}"
    cp.kubectl("create", "namespace", namespace)
    served = _Served()
    worker_log = logging.getLogger("kswarm.workflows.tools_file")
    worker_log.addHandler(served)
    old_level = worker_log.level
    worker_log.setLevel(logging.INFO)
    replicas = swarm.bg.run(
        start_replicas(
            1, SimConfig(model=SIM_MODEL, time_scale=FAST, behaviour=_call_named_tools())
        )
    )
    try:
        tool_server = {"command": str(TIME_SERVER), "timeoutSeconds": 30}
        apply(cp, _obj("ToolServer", server, tool_server), namespace)
        pool = {"model": SIM_MODEL, "endpoint": f"{replicas[0].url}/v1"}
        apply(cp, _obj("ModelPool", "callers", pool), namespace)

        def ready() -> dict[str, Any] | None:
            obj = get(cp, "ts", server, namespace)
            return obj if conditions(obj).get("Ready", {}).get("status") == "True" else None

        ts = wait_for(f"ts/{server} Ready", ready, timeout=60)
        assert f"{server}__get_current_time" in {t["name"] for t in ts["status"]["tools"]}
        wait_for(
            "the worker to serve the ToolServer",
            lambda: any(server in _serving(line) for line in served.lines),
            timeout=60,
        )
        yield Setup(namespace, server, "callers")
    finally:
        worker_log.removeHandler(served)
        worker_log.setLevel(old_level)
        swarm.bg.run(stop_replicas(replicas))


def _serving(line: str) -> list[str]:
    """The servers a "tool servers changed serving=A,B waiting=..." line names as served."""
    _, found, rest = line.partition("serving=")
    return rest.split()[0].split(",") if found and rest else []


def _obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _job(s: Setup, name: str, zones: list[str], **spec: Any) -> dict[str, Any]:
    tool = f"{s.server}__get_current_time"
    task = "\n".join(f"CALL {tool} {json.dumps({'timezone': z})}" for z in zones)
    body = {
        "task": task,
        "tools": [f"{s.server}__*"],
        "orchestrator": {"pool": s.pool},
        "subagents": {"pool": s.pool},
        **spec,
    }
    return _obj("SwarmJob", name, body)


def _phase(cp: ControlPlane, name: str, namespace: str, phase: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cp, "sj", name, namespace)
        return obj if obj.get("status", {}).get("phase") == phase else None

    return wait_for(f"sj/{name} {phase}", probe, timeout=90)


def test_a_job_calls_a_toolservers_tool_through_kubectl_and_the_ledger_has_the_calls(
    control_plane: ControlPlane, setup: Setup, swarm: SwarmBackend
) -> None:
    apply(control_plane, _job(setup, "clock", ["UTC", "Asia/Tokyo"]), setup.namespace)
    sj = _phase(control_plane, "clock", setup.namespace, "Succeeded")
    uid = sj["metadata"]["uid"]
    rows = swarm.bg.run(swarm.ledger.list_tool_calls(uid))
    calls = [r for r in rows if r.tool == f"{setup.server}__get_current_time"]
    assert sorted(r.arguments["timezone"] for r in calls) == ["Asia/Tokyo", "UTC"]
    assert {r.status for r in calls} == {"succeeded"}
    assert all(r.agent_id.startswith(f"{uid}/s") for r in calls)  # the sub-agents made them
    assert "Asia/Tokyo" in json.dumps([r.result for r in calls])
    assert all(r.approval is None for r in calls)
    assert sj["status"]["toolCalls"]["total"] >= 2
    assert "pendingApprovals" not in sj["status"]
    assert "WaitingForApproval" not in conditions(sj)


def _annotate(cp: ControlPlane, name: str, namespace: str, *pairs: str) -> None:
    cp.kubectl("annotate", "sj", name, "-n", namespace, "--overwrite", *pairs)


def _event(cp: ControlPlane, name: str, namespace: str, reason: str, text: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = [
            e
            for e in events(cp, name, namespace)
            if e["reason"] == reason and text in e.get("message", "")
        ]
        return found[0] if found else None

    return wait_for(f"event {reason} naming {text!r}", probe, timeout=30)


def test_a_job_requiring_approval_waits_in_its_status_and_is_decided_by_annotation(
    control_plane: ControlPlane, setup: Setup, swarm: SwarmBackend
) -> None:
    cp, ns, name = control_plane, setup.namespace, "clock-gated"
    tool = f"{setup.server}__get_current_time"
    apply(cp, _job(setup, name, ["UTC", "Europe/Paris"], requireApproval=[tool]), ns)

    def waiting() -> dict[str, Any] | None:
        obj = get(cp, "sj", name, ns)
        return obj if len(obj.get("status", {}).get("pendingApprovals", [])) == 2 else None

    sj = wait_for("two calls waiting in status.pendingApprovals", waiting, timeout=90)
    uid, status = sj["metadata"]["uid"], sj["status"]
    assert status["phase"] == "Running"
    cond = conditions(sj)["WaitingForApproval"]
    assert (cond["status"], cond["reason"]) == ("True", "WaitingForApproval")
    pending = sorted(status["pendingApprovals"], key=lambda p: p["call"])
    assert {p["tool"] for p in pending} == {tool}
    assert all(p["call"] == f"{uid}/{p['agent']}/1/0" for p in pending)
    wide = cp.kubectl("get", "sj", name, "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-1] == "WAITING" and wide[1].split()[-1] == "True"
    rows = swarm.bg.run(swarm.ledger.awaiting_tool_calls(uid))
    assert sorted(str(r.key) for r in rows) == [p["call"] for p in pending]

    # A call id that is not waiting: an Event names it, nothing else changes.
    _annotate(cp, name, ns, "kswarm.dev/approve=s009-000/1/0")
    _event(cp, name, ns, "ApprovalNotApplied", f"{uid}/s009-000/1/0")
    wait_for(
        "the annotation acknowledged (removed)",
        lambda: "kswarm.dev/approve" not in get(cp, "sj", name, ns)["metadata"]["annotations"],
        timeout=30,
    )
    assert len(get(cp, "sj", name, ns)["status"]["pendingApprovals"]) == 2

    # Approve one (without the job's uid), deny the other (with it).
    keep, drop = pending[0], pending[1]
    short = keep["call"].removeprefix(f"{uid}/")
    deny = f"kswarm.dev/deny={drop['call']}=not now"
    _annotate(cp, name, ns, f"kswarm.dev/approve={short}", deny)
    sj = _phase(cp, name, ns, "Succeeded")
    assert sj["status"]["pendingApprovals"] == []
    cond = conditions(sj)["WaitingForApproval"]
    assert (cond["status"], cond["reason"]) == ("False", "Decided")
    assert not {"kswarm.dev/approve", "kswarm.dev/deny"} & set(sj["metadata"]["annotations"])
    by = "by kubectl-annotate"
    _event(cp, name, ns, "ToolCallApproved", f"{keep['call']} ({tool}) approved {by}")
    _event(cp, name, ns, "ToolCallDenied", f"{drop['call']} ({tool}) denied {by}: not now")

    calls = {r.key: r for r in swarm.bg.run(swarm.ledger.list_tool_calls(uid))}
    kept, dropped = calls[keep["call"]], calls[drop["call"]]
    assert kept.status == "succeeded" and kept.approval["approved"] is True
    assert kept.approval["by"] == "kubectl-annotate"
    assert dropped.status == "failed" and dropped.error == "denied by kubectl-annotate: not now"
    assert dropped.approval["approved"] is False and dropped.approval["reason"] == "not now"
