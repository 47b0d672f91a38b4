"""A SwarmJob applied with kubectl runs to the end on the real stack, and says so truthfully.

Real everything: the test control plane, the Temporal dev server, PostgreSQL as the ledger, a
worker and simulated pools, and the operator as a subprocess with the RBAC of ``deploy/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from operator_support import (
    EXAMPLES,
    SwarmBackend,
    apply,
    assert_status_matches_ledger,
    conditions,
    events,
    example,
    get,
    on_pool,
    wait_for,
)

from kswarm.operator.workflow_runs import describe

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

WAIT = "--timeout=120s"


@dataclass
class Finished:
    namespace: str
    sj: dict[str, Any]


@pytest.fixture(scope="module")
def quickstart(
    control_plane: ControlPlane, swarm: SwarmBackend, kswarm_operator: OperatorProcess
) -> Finished:
    """examples/quickstart.yaml applied with kubectl and waited for, once for this module."""
    cp = control_plane
    namespace = "quickstart"
    cp.kubectl("create", "namespace", namespace)
    cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "quickstart.yaml"))
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/quickstart",
        "-n",
        namespace,
        WAIT,
        timeout=130,
    )
    return Finished(namespace, get(cp, "sj", "quickstart", namespace))


def test_quickstart_applied_with_kubectl_succeeds_and_its_status_matches_the_ledger(
    quickstart: Finished, swarm: SwarmBackend
) -> None:
    sj = quickstart.sj
    uid, status = sj["metadata"]["uid"], sj["status"]
    assert status["workflowId"] == f"swarmjob-{uid}"
    assert swarm.describe(status["workflowId"]).status.name == "COMPLETED"
    assert_status_matches_ledger(status, swarm, uid)
    assert status["subagents"]["spawned"] == 4
    assert status["observedGeneration"] == sj["metadata"]["generation"]
    assert status["startedAt"] <= status["finishedAt"]
    conds = conditions(sj)
    assert conds["Accepted"]["status"] == "True"
    assert conds["Running"]["status"] == "False"
    assert conds["Succeeded"]["status"] == "True"
    assert "critical steps" in conds["Succeeded"]["message"]


def test_the_deployed_operator_logs_its_start_and_the_job_s_end_at_its_default_level(
    quickstart: Finished, kswarm_operator: OperatorProcess
) -> None:
    """``kswarm operator``, as deploy/ runs it, without ``KSWARM_LOG_LEVEL``: INFO lines show."""
    assert "KSWARM_LOG_LEVEL" not in kswarm_operator.env()
    finished = f"job finished namespace={quickstart.namespace} name=quickstart phase=Succeeded"
    text = wait_for(
        "the job finished line in the operator's log",
        lambda: (t := kswarm_operator.log_path.read_text(errors="replace")) and finished in t and t,
        timeout=10,
    )
    assert "level=INFO logger=kswarm.operator.running operator started clusterwide=True" in text


def test_kubectl_get_shows_the_printer_columns_with_values(
    quickstart: Finished, control_plane: ControlPlane
) -> None:
    status = quickstart.sj["status"]
    out = control_plane.kubectl("get", "sj", "-n", quickstart.namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "PHASE",
        "SUB-AGENTS",
        "TOOL",
        "CALLS",
        "CRITICAL",
        "STEPS",
        "SPEEDUP",
        "AGE",
    ]
    assert row.split()[:6] == [
        "quickstart",
        "Succeeded",
        str(status["subagents"]["spawned"]),
        str(status["toolCalls"]["total"]),
        str(status["criticalSteps"]),
        f"{status['speedup']:g}",
    ]


def test_milestones_are_kubernetes_events(
    quickstart: Finished, control_plane: ControlPlane
) -> None:
    cp, namespace = control_plane, quickstart.namespace

    def with_succeeded() -> list[dict[str, Any]] | None:
        evs = events(cp, "quickstart", namespace)
        return evs if "Succeeded" in {e["reason"] for e in evs} else None

    by_reason = {e["reason"]: e for e in wait_for("the Succeeded event", with_succeeded)}
    assert {"WorkflowStarted", "SubagentsSpawned", "Succeeded"} <= set(by_reason)
    assert "swarmjob-" in by_reason["WorkflowStarted"]["message"]
    assert "4 sub-agents spawned" in by_reason["SubagentsSpawned"]["message"]
    assert by_reason["Succeeded"]["type"] == "Normal"
    described = cp.kubectl("describe", "sj", "quickstart", "-n", namespace).stdout
    assert "WorkflowStarted" in described


def test_a_job_naming_an_unknown_tool_fails_with_invalid_spec_and_starts_nothing(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    manifest = example("quickstart")
    manifest["metadata"]["name"] = "bad-tool"
    manifest["spec"]["tools"] = ["teleport"]
    apply(cp, manifest, namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Failed",
        "sj/bad-tool",
        "-n",
        namespace,
        "--timeout=30s",
        timeout=40,
    )
    sj = get(cp, "sj", "bad-tool", namespace)
    accepted = conditions(sj)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.tools[0]" in accepted["message"] and "teleport" in accepted["message"]
    assert sj["status"]["reason"] == "InvalidSpec"
    wid = f"swarmjob-{sj['metadata']['uid']}"
    assert swarm.bg.run(describe(swarm.client, wid)) is None
    assert "InvalidSpec" in {e["reason"] for e in events(cp, "bad-tool", namespace)}


def test_a_job_waits_with_pool_not_found_and_starts_when_the_pool_appears(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, on_pool(example("quickstart"), "late-pool", name="waits"), namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.reason}=PoolNotFound",
        "sj/waits",
        "-n",
        namespace,
        "--timeout=30s",
        timeout=40,
    )
    sj = get(cp, "sj", "waits", namespace)
    assert sj["status"]["phase"] == "Pending"
    accepted = conditions(sj)["Accepted"]
    assert (accepted["status"], accepted["reason"]) == ("False", "PoolNotFound")
    assert "'late-pool'" in accepted["message"]
    wid = f"swarmjob-{sj['metadata']['uid']}"
    assert swarm.bg.run(describe(swarm.client, wid)) is None

    url = swarm.pool_urls["late-pool"][0]
    pool = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "late-pool"},
        "spec": {"model": "kswarm-sim", "endpoint": f"{url}/v1"},
    }
    apply(cp, pool, namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/waits",
        "-n",
        namespace,
        "--timeout=60s",
        timeout=70,
    )
    sj = get(cp, "sj", "waits", namespace)
    assert conditions(sj)["Accepted"]["reason"] == "Validated"
    assert_status_matches_ledger(sj["status"], swarm, sj["metadata"]["uid"])
    mp = get(cp, "mp", "late-pool", namespace)
    assert (mp["status"]["phase"], mp["status"]["readyReplicas"]) == ("Ready", 1)
