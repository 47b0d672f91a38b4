"""A SwarmJob's rollout group as its status tells it: progress, rewards, the group's rule.

Pure functions of ``kswarm.operator.rollout_groups``; the rewards come from the real scoring of
:mod:`kswarm.rollouts` (nothing hard-coded), and every field written is checked against the
CRD's status schema (the API server prunes any other, which would look changed on every pass).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kswarm.errors import SpecError
from kswarm.ledger import JobCounters
from kswarm.operator import rollout_groups as groups
from kswarm.rollouts import RolloutOutcome
from kswarm.rollouts.answer_keys import config_map_ref, inline_config_map_key
from kswarm.rollouts.groups import score_group
from kswarm.sim.corpus import default_corpus
from kswarm.sim.tasks import parse_task
from kswarm.spec import parse_manifest
from kswarm.tools.control import STEERING_TOOLS
from kswarm.workflows import RolloutInput, RolloutResult
from kswarm.workflows.rollout import RolloutSample

CRD = Path(__file__).resolve().parents[2] / "crds" / "swarmjobs.yaml"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MANIFEST: dict[str, Any] = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "g", "namespace": "ns", "uid": "u-1"},
    "spec": {
        "task": "Find the CEO of each of 4 companies.",
        "evaluation": {"scorer": "exact-match", "answerKey": {"text": "x"}},
        "rollout": {"samples": 3, "epoch": 1, "epochs": 4, "seed": 7, "temperature": 0.5},
    },
}


def _result(outcomes: list[RolloutOutcome], *, epoch: int = 1, epochs: int = 4) -> RolloutResult:
    terms = score_group(outcomes, epoch=epoch, epochs=epochs)
    samples = [
        RolloutSample(
            index=i,
            uid=f"u-1-s{i}",
            phase=o.phase,
            reason=None if o.phase == "Succeeded" else "BudgetExceeded: too many critical steps",
            critical_steps=o.critical_steps,
            quality=o.quality,
            terms=t.metrics(),
        )
        for i, (o, t) in enumerate(zip(outcomes, terms, strict=True))
    ]
    mean = round(sum(t.reward for t in terms) / len(terms), 6)
    return RolloutResult("g", "u-1", epoch, epochs, samples, mean)


def _status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def _assert_in_schema(value: Any, schema: dict[str, Any], path: str = "status") -> None:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for k, v in value.items():
            assert k in props, f"{path}.{k} is not in the CRD's status schema"
            _assert_in_schema(v, props[k], f"{path}.{k}")
    elif isinstance(value, list):
        assert schema["type"] == "array", path
        assert len(value) <= schema.get("maxItems", len(value)), path
        for i, item in enumerate(value):
            _assert_in_schema(item, schema["items"], f"{path}[{i}]")
    else:
        kinds = {"integer": int, "number": (int, float), "string": str}
        assert isinstance(value, kinds[schema["type"]]), f"{path} is not {schema['type']}"


SWARM = RolloutOutcome(phase="Succeeded", quality=1.0, finished_per_stage=(4,), spawned=4)
SERIAL = RolloutOutcome(
    phase="Succeeded", quality=0.5, finished_per_stage=(1, 1, 1, 1), spawned=4, critical_steps=9
)
FAILED = RolloutOutcome(phase="Failed", quality=None, finished_per_stage=(1,), spawned=2)


def test_only_a_job_with_spec_rollout_is_a_group() -> None:
    assert groups.is_rollout(MANIFEST["spec"])
    assert not groups.is_rollout({"task": "t"})
    assert not groups.is_rollout(None)


def test_the_group_s_input_is_what_spec_rollout_asks_for() -> None:
    job = parse_manifest(MANIFEST)
    inp = groups.group_input(job.name, job.namespace, job.uid, job.spec)
    assert inp == RolloutInput.from_manifest(MANIFEST)
    assert inp.workflow_id == groups.workflow_id("u-1")
    assert groups.sample_uids("u-1", 2) == [inp.sample(0).uid, inp.sample(1).uid]


def test_a_group_without_a_scorer_is_refused_naming_the_field() -> None:
    manifest = {
        **MANIFEST,
        "spec": {k: v for k, v in MANIFEST["spec"].items() if k != "evaluation"},
    }
    with pytest.raises(SpecError) as e:
        groups.check_spec(parse_manifest(manifest).spec)
    assert e.value.path == "spec.evaluation"
    groups.check_spec(parse_manifest(MANIFEST).spec)  # with one: accepted


def test_the_live_status_counts_the_samples_that_ended() -> None:
    live = groups.live_status(5, {0: "Succeeded", 3: "Failed", 4: "Cancelled"})
    assert live == {
        "phase": "Running",
        "rollout": {"samples": 5, "done": 3, "succeeded": 1, "failed": 2, "progress": "3/5"},
    }
    _assert_in_schema(live, _status_schema())


def test_a_scored_group_with_a_success_succeeds_and_reports_every_sample_s_terms() -> None:
    result = _result([SWARM, SERIAL, FAILED])
    totals = groups.Totals()
    final = groups.final_status(
        result,
        totals,
        old_conditions=None,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        now=T0 + timedelta(seconds=4),
        generation=1,
    )
    _assert_in_schema(final, _status_schema())
    rollout = final["rollout"]
    assert (final["phase"], final["reason"]) == ("Succeeded", "Succeeded")
    assert rollout["progress"] == "3/3" and (rollout["succeeded"], rollout["failed"]) == (2, 1)
    assert rollout["meanReward"] == result.mean_reward
    rewards = [s.terms["reward"] for s in result.samples]
    assert rollout["meanReward"] == pytest.approx(sum(rewards) / 3, abs=1e-6)
    quality = [s.terms["quality"] for s in result.samples]
    assert rollout["meanQuality"] == pytest.approx(sum(quality) / 3, abs=1e-6)
    assert [r["reward"] for r in rollout["rewards"]] == [round(r, 6) for r in rewards]
    assert [r["advantage"] for r in rollout["rewards"]] == [
        round(s.terms["advantage"], 6) for s in result.samples
    ]
    assert [r["phase"] for r in rollout["rewards"]] == ["Succeeded", "Succeeded", "Failed"]
    assert rollout["lambdaAux"] == result.samples[0].terms["lambda_aux"]
    assert (rollout["epoch"], rollout["epochs"]) == (1, 4)
    assert final["wallSeconds"] == 3.0
    succeeded = {c["type"]: c for c in final["conditions"]}["Succeeded"]
    assert succeeded["status"] == "True"
    assert f"mean R {result.mean_reward:g}" in succeeded["message"]


def test_a_group_where_no_sample_succeeded_fails_with_its_reason() -> None:
    result = _result([FAILED, FAILED])
    final = groups.final_status(
        result,
        groups.Totals(),
        old_conditions=None,
        started_at=None,
        finished_at=T0,
        now=T0,
        generation=None,
    )
    assert (final["phase"], final["reason"]) == ("Failed", "NoSampleSucceeded")
    failed = {c["type"]: c for c in final["conditions"]}["Failed"]
    assert "0 succeeded, 2 failed" in failed["message"]
    assert "BudgetExceeded" in failed["message"]
    assert "wallSeconds" not in final


def test_a_group_closed_without_a_result_keeps_its_progress_and_reason() -> None:
    ended = groups.ended_status(
        "Cancelled",
        "Cancelled: the rollout group was cancelled",
        3,
        ["Succeeded", "Cancelled", ""],
        groups.Totals(),
        old_conditions=None,
        finished_at=T0,
        now=T0,
        generation=2,
    )
    _assert_in_schema(ended, _status_schema())
    assert (ended["phase"], ended["reason"]) == ("Cancelled", "Cancelled")
    assert ended["rollout"] == {
        "samples": 3,
        "done": 2,
        "succeeded": 1,
        "failed": 1,
        "progress": "2/3",
    }


def test_the_totals_sum_the_samples_as_a_single_job_s_report_counts() -> None:
    steering = sorted(STEERING_TOOLS)[0]
    first = JobCounters(
        tool_calls_total=10,
        tool_calls_failed=1,
        tool_calls_refused=2,
        tool_calls_deduplicated=3,
        llm_calls=5,
        tokens_input=100,
        tokens_output=20,
        by_tool={"search": 8, steering: 2},
    )
    second = JobCounters(tool_calls_total=4, llm_calls=2, tokens_input=7, by_tool={"search": 4})
    totals = groups.Totals()
    totals.add({"subagents": {"spawned": 4, "succeeded": 3, "failed": 1}}, first)
    totals.add({"subagents": {"spawned": 2, "succeeded": 2}}, second)
    totals.add(None, JobCounters())
    assert totals.fields() == {
        "subagents": {"spawned": 6, "succeeded": 5, "failed": 1, "running": 0},
        "toolCalls": {"total": 12, "failed": 3, "deduplicated": 3},
        "llmCalls": 7,
        "tokens": {"input": 107, "output": 20},
    }


def test_the_readme_s_kubectl_example_is_a_valid_group_whose_key_is_the_simulated_truth() -> None:
    """The "Training data" section's manifest: a SwarmJob with spec.rollout and its ConfigMap."""
    readme = (CRD.parents[1] / "README.md").read_text()
    section = readme.split("## Training data", 1)[1].split("\n## ", 1)[0]
    block = next(b for b in section.split("```yaml\n")[1:] if "kind: SwarmJob" in b)
    docs = list(yaml.safe_load_all(block.split("```", 1)[0]))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    job = parse_manifest(next(d for d in docs if d["kind"] == "SwarmJob"))
    groups.check_spec(job.spec)
    ref = config_map_ref(job.spec)
    assert ref is not None and ref.name == config_map["metadata"]["name"]
    spec = inline_config_map_key(job.spec, namespace="default", data=config_map["data"])
    assert spec.evaluation is not None and spec.evaluation.answer_key is not None
    task = parse_task(spec.task)
    assert task is not None
    corpus = default_corpus()
    truth = [
        {"entity": n, **{a: corpus.by_name[n].fact(a) for a in task.attributes}} for n in task.items
    ]
    assert list(spec.evaluation.answer_key.rows) == truth
    assert groups.group_input(job.name, job.namespace, job.uid, spec).samples == 8
