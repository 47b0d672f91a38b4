"""A running SwarmJob survives the operator and ends cleanly when deleted.

Both jobs here run on the 'slow' pool (a simulator at a real GPU's pace, about 15 s for the
quickstart task), so there is time to act while they run.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from operator_support import (
    SwarmBackend,
    apply,
    assert_status_matches_ledger,
    events,
    example,
    get,
    on_pool,
    wait_for,
)

from kswarm.operator.workflow_runs import start_once
from kswarm.workflows import SwarmJobInput

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess


def running_with_subagents(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any]:
    """Wait until the job runs and has spawned its sub-agents; its object then."""

    def probe() -> dict[str, Any] | None:
        sj = get(cp, "sj", name, namespace)
        st = sj.get("status", {})
        spawned = st.get("subagents", {}).get("spawned", 0)
        return sj if st.get("phase") == "Running" and spawned > 0 else None

    return wait_for(f"{name} to run with sub-agents", probe, timeout=60)


def test_deleting_a_running_job_cancels_its_workflow_and_releases_the_finalizer(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, on_pool(example("quickstart"), "slow", name="doomed"), namespace)
    sj = running_with_subagents(cp, "doomed", namespace)
    assert "kswarm.dev/finalizer" in sj["metadata"]["finalizers"]
    wid = sj["status"]["workflowId"]
    assert swarm.describe(wid).status.name == "RUNNING"

    cp.kubectl("delete", "sj", "doomed", "-n", namespace, "--timeout=60s", timeout=70)

    gone = cp.kubectl("get", "sj", "doomed", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert swarm.describe(wid).status.name == "CANCELED"
    job = swarm.job(sj["metadata"]["uid"])
    assert job is not None and job.phase == "Cancelled"

    # The deletion ran once: one line, one event, and no final status written after it.
    where = f"namespace={namespace} name=doomed"
    deleted = f"job deleted {where} workflow_id={wid} workflow_status=CANCELED"
    wait_for("the deletion in the operator's log", lambda: deleted in kswarm_operator.log_tail())
    time.sleep(3.0)  # room for a repeat: several status intervals and kopf's retry backoff
    log = kswarm_operator.log_path.read_text(errors="replace")
    assert log.count(f"job deleted {where} ") == 1, kswarm_operator.log_tail()
    assert f"job finished {where} " not in log, kswarm_operator.log_tail()
    cancelled = [e for e in events(cp, "doomed", namespace) if e["reason"] == "Cancelled"]
    assert len(cancelled) == 1 and cancelled[0].get("count", 1) == 1, cancelled


def test_an_operator_restart_mid_job_starts_nothing_twice_and_the_status_converges(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, on_pool(example("quickstart"), "slow", name="survivor"), namespace)
    sj = running_with_subagents(cp, "survivor", namespace)
    uid, wid = sj["metadata"]["uid"], sj["status"]["workflowId"]
    run_id = swarm.describe(wid).run_id

    kswarm_operator.kill()
    kswarm_operator.start()
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/survivor",
        "-n",
        namespace,
        "--timeout=90s",
        timeout=100,
    )

    assert swarm.run_ids(wid) == [run_id]
    sj = get(cp, "sj", "survivor", namespace)
    assert_status_matches_ledger(sj["status"], swarm, uid)
    started = [e for e in events(cp, "survivor", namespace) if e["reason"] == "WorkflowStarted"]
    assert len(started) == 1 and started[0].get("count", 1) == 1

    # A second start of the same job is a no-op, even by hand.
    again = swarm.bg.run(
        start_once(swarm.client, SwarmJobInput.from_manifest(json.loads(json.dumps(sj))))
    )
    assert not again.created and again.run_id == run_id
    assert swarm.run_ids(wid) == [run_id]
