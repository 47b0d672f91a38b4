"""A SwarmJob with ``spec.rollout`` applied with kubectl runs as a rollout group, scored against
an answer key from a ConfigMap, and its status says what the ledger and the workflow computed.

Real everything: the test control plane, the Temporal dev server, PostgreSQL as the ledger, a
worker and simulated pools, and the operator as a subprocess with the RBAC of ``deploy/`` (which
must let it read the ConfigMap). The task is the quickstart's; its answer key is the simulated
world's truth with one cell wrong, so the samples' quality is below 1 and tells that this key,
not the corpus, scored them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from operator_support import (
    SwarmBackend,
    apply,
    conditions,
    events,
    example,
    get,
    on_pool,
    wait_for,
)

from kswarm.operator.workflow_runs import describe
from kswarm.rollouts import scorers
from kswarm.rollouts.exporting import resolve_jobs
from kswarm.sim.corpus import default_corpus
from kswarm.sim.tasks import parse_task
from kswarm.tools.control import STEERING_TOOLS
from kswarm.workflows import RolloutResult, RolloutWorkflow

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

SAMPLES = 3
KEY_MAP, KEY = "quickstart-key", "rows.yaml"


def _key_rows() -> list[dict[str, Any]]:
    """The quickstart's truth from the simulated world, with the first company's CEO wrong."""
    task = parse_task(example("quickstart")["spec"]["task"])
    assert task is not None
    corpus = default_corpus()
    rows = [
        {"entity": n, **{a: corpus.by_name[n].fact(a) for a in task.attributes}} for n in task.items
    ]
    rows[0]["ceo"] = "Nobody In Particular"
    return rows


def _config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _group(name: str, *, samples: int = SAMPLES, pool: str = "default") -> dict[str, Any]:
    m = on_pool(example("quickstart"), pool, name=name)
    m["spec"]["evaluation"] = {
        "scorer": "item-f1",
        "answerKey": {"configMap": {"name": KEY_MAP, "key": KEY}},
    }
    m["spec"]["rollout"] = {"samples": samples, "epoch": 0, "epochs": 3}
    return m


@dataclass
class Finished:
    namespace: str
    sj: dict[str, Any]
    rows: list[dict[str, Any]]


@pytest.fixture(scope="module")
def group(
    control_plane: ControlPlane, swarm: SwarmBackend, kswarm_operator: OperatorProcess
) -> Finished:
    """A group of 3 quickstart samples with its key in a ConfigMap, waited for once."""
    cp, namespace = control_plane, "rollouts"
    cp.kubectl("create", "namespace", namespace)
    rows = _key_rows()
    apply(cp, _config_map(KEY_MAP, {KEY: yaml.safe_dump(rows)}), namespace)
    apply(cp, _group("group"), namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/group",
        "-n",
        namespace,
        "--timeout=180s",
        timeout=190,
    )
    return Finished(namespace, get(cp, "sj", "group", namespace), rows)


def _result(swarm: SwarmBackend, wid: str) -> RolloutResult:
    handle = swarm.client.get_workflow_handle_for(RolloutWorkflow.run, wid)
    return swarm.bg.run(handle.result())


def test_a_group_applied_with_kubectl_runs_as_a_rollout_workflow_and_reports_its_rewards(
    group: Finished, swarm: SwarmBackend
) -> None:
    sj = group.sj
    uid, status = sj["metadata"]["uid"], sj["status"]
    assert status["workflowId"] == f"rollout-{uid}"
    assert swarm.describe(status["workflowId"]).status.name == "COMPLETED"
    assert swarm.bg.run(describe(swarm.client, f"swarmjob-{uid}")) is None  # no single job
    result = _result(swarm, status["workflowId"])
    jobs = [swarm.job(f"{uid}-s{i}") for i in range(SAMPLES)]
    assert all(j is not None for j in jobs)
    terms = [j.report["rollout"]["terms"] for j in jobs]

    rollout = status["rollout"]
    succeeded = sum(1 for j in jobs if j.phase == "Succeeded")
    assert succeeded > 0
    assert (rollout["samples"], rollout["done"], rollout["progress"]) == (
        SAMPLES,
        SAMPLES,
        f"{SAMPLES}/{SAMPLES}",
    )
    assert (rollout["succeeded"], rollout["failed"]) == (succeeded, SAMPLES - succeeded)
    # The mean reward is the workflow's and the ledger's (each sample's stored terms).
    assert rollout["meanReward"] == result.mean_reward
    assert rollout["meanReward"] == round(sum(t["reward"] for t in terms) / SAMPLES, 6)
    assert rollout["meanQuality"] == round(sum(t["quality"] for t in terms) / SAMPLES, 6)
    assert rollout["rewards"] == [
        {
            "sample": i,
            "phase": j.phase,
            "reward": round(t["reward"], 6),
            "advantage": round(t["advantage"], 6),
            "quality": round(t["quality"], 6),
        }
        for i, (j, t) in enumerate(zip(jobs, terms, strict=True))
    ]
    assert rollout["lambdaAux"] == terms[0]["lambda_aux"] == 0.1
    assert (rollout["epoch"], rollout["epochs"]) == (0, 3)
    # Each sample was scored against the ConfigMap's key, which the test scores again.
    for j in jobs:
        assert j.quality == pytest.approx(scorers.item_f1(j.result or "", group.rows))
    assert 0 < rollout["meanQuality"] < 1
    # The counters are the samples' sums.
    spawned = sum(j.report["subagents"]["spawned"] for j in jobs)
    counters = [swarm.counters(j.uid) for j in jobs]
    tools = sum(
        c.tool_calls_total - sum(n for t, n in c.by_tool.items() if t in STEERING_TOOLS)
        for c in counters
    )
    assert status["subagents"]["spawned"] == spawned > 0
    assert status["toolCalls"]["total"] == tools > 0
    assert status["llmCalls"] == sum(c.llm_calls for c in counters)
    assert status["phase"] == "Succeeded"
    # kswarm export finds the group's samples by the SwarmJob's uid and by its name.
    for ref in (uid, f"{group.namespace}/group"):
        exported = swarm.bg.run(resolve_jobs(swarm.ledger, ref))
        assert [j.uid for j in exported] == [j.uid for j in jobs], ref
    conds = conditions(sj)
    assert conds["Accepted"]["status"] == "True"
    assert conds["Succeeded"]["status"] == "True"
    assert f"mean R {result.mean_reward:g}" in conds["Succeeded"]["message"]


def test_kubectl_get_wide_shows_the_samples_and_the_mean_reward(
    group: Finished, control_plane: ControlPlane
) -> None:
    cp, rollout = control_plane, group.sj["status"]["rollout"]
    plain = cp.kubectl("get", "sj", "group", "-n", group.namespace).stdout
    assert "SAMPLES" not in plain.splitlines()[0]  # the default columns stay as they are
    wide = cp.kubectl("get", "sj", "group", "-n", group.namespace, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    status = group.sj["status"]
    assert row.split()[:4] == [
        "group",
        "Succeeded",
        str(status["subagents"]["spawned"]),
        str(status["toolCalls"]["total"]),
    ]
    assert _column(header, row, "SAMPLES") == rollout["progress"]
    assert _column(header, row, "MEAN R") == f"{rollout['meanReward']:g}"


def _column(header: str, row: str, name: str) -> str:
    """The value under ``name`` in kubectl's table (columns start where their header does)."""
    start = header.index(name)
    return row[start:].split()[0]


def test_the_group_s_end_is_an_event(group: Finished, control_plane: ControlPlane) -> None:
    def ended() -> list[dict[str, Any]] | None:
        evs = events(control_plane, "group", group.namespace)
        return evs if "Succeeded" in {e["reason"] for e in evs} else None

    by_reason = {e["reason"]: e for e in wait_for("the Succeeded event", ended)}
    assert "rollout-" in by_reason["WorkflowStarted"]["message"]
    assert f"{SAMPLES} samples" in by_reason["Succeeded"]["message"]


def test_a_missing_answer_key_config_map_or_key_keeps_the_group_pending_until_it_appears(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, _group("waits", samples=1), namespace)

    def pending_with(text: str) -> dict[str, Any] | None:
        sj = get(cp, "sj", "waits", namespace)
        accepted = conditions(sj).get("Accepted", {})
        return sj if text in accepted.get("message", "") else None

    sj = wait_for("the AnswerKeyNotFound reason", lambda: pending_with("does not exist"))
    status, accepted = sj["status"], conditions(sj)["Accepted"]
    assert (status["phase"], status["reason"]) == ("Pending", "AnswerKeyNotFound")
    assert (accepted["status"], accepted["reason"]) == ("False", "AnswerKeyNotFound")
    assert f"ConfigMap {namespace}/{KEY_MAP}" in accepted["message"]
    assert repr(KEY) in accepted["message"]
    uid = sj["metadata"]["uid"]
    assert swarm.bg.run(describe(swarm.client, f"rollout-{uid}")) is None
    assert "AnswerKeyNotFound" in {e["reason"] for e in events(cp, "waits", namespace)}

    # The ConfigMap appears without the key: still waiting, now naming the key it lacks.
    apply(cp, _config_map(KEY_MAP, {"other.yaml": "[]"}), namespace)
    sj = wait_for("the missing key's reason", lambda: pending_with(f"has no key {KEY!r}"))
    assert sj["status"]["phase"] == "Pending"
    assert "'other.yaml'" in conditions(sj)["Accepted"]["message"]

    # The key appears: the group starts and ends.
    apply(cp, _config_map(KEY_MAP, {KEY: json.dumps({"rows": _key_rows()})}), namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/waits",
        "-n",
        namespace,
        "--timeout=120s",
        timeout=130,
    )
    sj = get(cp, "sj", "waits", namespace)
    assert conditions(sj)["Accepted"]["reason"] == "Validated"
    assert sj["status"]["rollout"]["progress"] == "1/1"


def test_an_invalid_answer_key_fails_the_job_naming_the_config_map(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, _config_map(KEY_MAP, {KEY: "rows: [1, 2]\n"}), namespace)
    apply(cp, _group("bad-key", samples=1), namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Failed",
        "sj/bad-key",
        "-n",
        namespace,
        "--timeout=30s",
        timeout=40,
    )
    sj = get(cp, "sj", "bad-key", namespace)
    accepted = conditions(sj)["Accepted"]
    assert (sj["status"]["reason"], accepted["reason"]) == ("InvalidAnswerKey", "InvalidAnswerKey")
    assert f"ConfigMap {namespace}/{KEY_MAP}" in accepted["message"]
    assert "rows must be a list of objects" in accepted["message"]
    uid = sj["metadata"]["uid"]
    assert swarm.bg.run(describe(swarm.client, f"rollout-{uid}")) is None


def test_deleting_a_running_group_cancels_it_and_its_samples(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, _config_map(KEY_MAP, {KEY: yaml.safe_dump(_key_rows())}), namespace)
    apply(cp, _group("doomed-group", samples=2, pool="slow"), namespace)

    def running() -> dict[str, Any] | None:
        sj = get(cp, "sj", "doomed-group", namespace)
        st = sj.get("status", {})
        return sj if st.get("phase") == "Running" and "rollout" in st else None

    sj = wait_for("the group to run with its progress", running, timeout=60)
    assert sj["status"]["rollout"] == {
        "samples": 2,
        "done": 0,
        "succeeded": 0,
        "failed": 0,
        "progress": "0/2",
    }
    uid, wid = sj["metadata"]["uid"], sj["status"]["workflowId"]
    samples = [f"swarmjob-{uid}-s{i}" for i in range(2)]
    wait_for(
        "the samples to run",
        lambda: all(swarm.bg.run(describe(swarm.client, w)) is not None for w in samples),
    )

    cp.kubectl("delete", "sj", "doomed-group", "-n", namespace, "--timeout=60s", timeout=70)

    gone = cp.kubectl("get", "sj", "doomed-group", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert swarm.describe(wid).status.name == "CANCELED"
    wait_for(
        "the samples to be cancelled",
        lambda: all(swarm.describe(w).status.name == "CANCELED" for w in samples),
        timeout=30,
    )
    deleted = f"job deleted namespace={namespace} name=doomed-group workflow_id={wid}"
    wait_for("the deletion in the operator's log", lambda: deleted in kswarm_operator.log_tail())


def test_an_operator_restart_mid_group_starts_nothing_twice_and_the_status_converges(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    apply(cp, _config_map(KEY_MAP, {KEY: yaml.safe_dump(_key_rows())}), namespace)
    apply(cp, _group("survivor-group", samples=2, pool="slow"), namespace)

    def running() -> dict[str, Any] | None:
        sj = get(cp, "sj", "survivor-group", namespace)
        st = sj.get("status", {})
        return sj if st.get("phase") == "Running" and "rollout" in st else None

    sj = wait_for("the group to run", running, timeout=60)
    uid, wid = sj["metadata"]["uid"], sj["status"]["workflowId"]
    run_id = swarm.describe(wid).run_id

    kswarm_operator.kill()
    kswarm_operator.start()
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        "sj/survivor-group",
        "-n",
        namespace,
        "--timeout=120s",
        timeout=130,
    )
    assert swarm.run_ids(wid) == [run_id]
    assert swarm.run_ids(f"swarmjob-{uid}-s0") == [swarm.describe(f"swarmjob-{uid}-s0").run_id]
    status = get(cp, "sj", "survivor-group", namespace)["status"]
    result = _result(swarm, wid)
    assert status["rollout"]["progress"] == "2/2"
    assert status["rollout"]["meanReward"] == result.mean_reward
    started = [
        e for e in events(cp, "survivor-group", namespace) if e["reason"] == "WorkflowStarted"
    ]
    assert len(started) == 1 and started[0].get("count", 1) == 1


def test_a_group_where_no_sample_succeeds_fails_with_no_sample_succeeded(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    """A critical-steps budget no plan can meet: every sample ends BudgetExceeded."""
    cp = control_plane
    apply(cp, _config_map(KEY_MAP, {KEY: yaml.safe_dump(_key_rows())}), namespace)
    manifest = _group("hopeless", samples=2)
    manifest["spec"]["limits"] = {"maxCriticalSteps": 1}
    apply(cp, manifest, namespace)
    cp.kubectl(
        "wait",
        "--for=jsonpath={.status.phase}=Failed",
        "sj/hopeless",
        "-n",
        namespace,
        "--timeout=120s",
        timeout=130,
    )
    sj = get(cp, "sj", "hopeless", namespace)
    uid, status = sj["metadata"]["uid"], sj["status"]
    jobs = [swarm.job(f"{uid}-s{i}") for i in range(2)]
    assert [j.phase for j in jobs] == ["Failed", "Failed"]
    assert status["reason"] == "NoSampleSucceeded"
    assert (status["rollout"]["succeeded"], status["rollout"]["failed"]) == (0, 2)
    assert status["rollout"]["meanReward"] == _result(swarm, status["workflowId"]).mean_reward
    failed = conditions(sj)["Failed"]
    assert failed["reason"] == "NoSampleSucceeded"
    assert (jobs[0].reason or "").split(":")[0] in failed["message"]
