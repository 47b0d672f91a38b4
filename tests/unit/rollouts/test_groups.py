"""A group's samples: their uids, seeds and scoring, computed by hand."""

from __future__ import annotations

import pytest

from kswarm.rollouts.groups import outcome_from_report, sample_uid, score_group
from kswarm.workflows import RolloutInput
from kswarm.workflows.model_steps import _call_seed

MANIFEST = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "g", "uid": "abc"},
    "spec": {
        "task": "t",
        "evaluation": {"scorer": "exact-match", "answerKey": {"text": "x"}},
        "rollout": {"samples": 3, "epoch": 1, "epochs": 4, "temperature": 0.7, "seed": 10},
    },
}


def test_spec_rollout_makes_the_group_and_each_sample_gets_its_own_seed() -> None:
    group = RolloutInput.from_manifest(MANIFEST)
    assert (group.samples, group.epoch, group.epochs, group.temperature) == (3, 1, 4, 0.7)
    samples = [group.sample(i) for i in range(group.samples)]
    assert (
        [s.uid for s in samples]
        == ["abc-s0", "abc-s1", "abc-s2"]
        == [sample_uid("abc", i) for i in range(3)]
    )
    assert [s.spec.rollout.seed for s in samples if s.spec.rollout] == [10, 11, 12]
    assert [s.name for s in samples] == ["g-s0", "g-s1", "g-s2"]


def test_keywords_override_spec_rollout() -> None:
    group = RolloutInput.from_manifest(MANIFEST, samples=1, seed=0)
    assert (group.samples, group.seed, group.epochs) == (1, 0, 4)


def test_call_seeds_are_stable_and_differ_between_agents_and_steps() -> None:
    assert _call_seed(1, "j/a", 1) == _call_seed(1, "j/a", 1)
    seeds = {_call_seed(s, a, n) for s in (1, 2) for a in ("j/a", "j/b") for n in (1, 2)}
    assert len(seeds) == 8
    assert all(0 <= s < 2**31 for s in seeds)


def test_a_group_is_scored_from_the_reports_its_jobs_wrote() -> None:
    # Sample 0: one stage, 3 of 3 finished, Q 0.5; sample 1: failed, no sub-agents.
    reports = [
        {"finishedPerStage": [3], "subagents": {"spawned": 3}, "evaluation": {}},
        {"finishedPerStage": [], "subagents": {"spawned": 0}},
    ]
    outcomes = [
        outcome_from_report("Succeeded", 0.5, 5, reports[0]),
        outcome_from_report("Failed", None, 2, reports[1]),
    ]
    a, b = score_group(outcomes, epoch=0, epochs=2)
    # λ = 0.1: R_a = 0.1 * (1 - 1/3) + 0.9 * 0.5 = 0.516667, R_b = 0; advantages ±1.
    assert a.reward == pytest.approx(0.1 * 2 / 3 + 0.45, abs=1e-6) and b.reward == 0.0
    assert (a.advantage, b.advantage) == (1.0, -1.0)
    assert b.quality == 0.0 and not b.success
