"""SwarmJobSpec: defaults, and every validation error naming its field and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kswarm.errors import SpecError
from kswarm.spec import load_manifest_file, parse_manifest
from kswarm.workflows import SwarmJobInput

VALID: dict[str, Any] = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "job", "namespace": "team-a"},
    "spec": {"task": "find things"},
}


def with_spec(**changes: Any) -> dict[str, Any]:
    m = copy.deepcopy(VALID)
    for path, value in changes.items():
        node = m["spec"]
        *parents, leaf = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        if value is ...:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return m


def test_defaults_match_the_design() -> None:
    spec = parse_manifest(VALID).spec
    assert spec.mode == "swarm"
    assert spec.subagents.max_concurrent == 100
    assert spec.limits.max_tool_calls == 1500
    assert spec.tools == ()
    assert spec.evaluation is None
    assert spec.retry.max_attempts == 5


def test_the_same_manifest_gets_the_same_uid_and_another_gets_another() -> None:
    a = parse_manifest(VALID).uid
    assert a == parse_manifest(copy.deepcopy(VALID)).uid
    assert a != parse_manifest(with_spec(task="other")).uid


def test_sdk_input_is_built_from_a_manifest() -> None:
    inp = SwarmJobInput.from_manifest(with_spec(subagents__maxConcurrent=7))
    assert inp.spec.subagents.max_concurrent == 7
    assert inp.workflow_id == f"swarmjob-{inp.uid}"
    assert inp.namespace == "team-a"


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        pytest.param(with_spec(task=...), "spec.task: is required", id="missing-task"),
        pytest.param(with_spec(task=""), "spec.task: must be a non-empty string", id="empty-task"),
        pytest.param(
            with_spec(subagents__maxConcurrent=1000),
            "spec.subagents.maxConcurrent: must be between 1 and 300, got 1000",
            id="too-many-subagents",
        ),
        pytest.param(
            with_spec(subagents__maxConcurrent="ten"),
            "spec.subagents.maxConcurrent: must be an integer between 1 and 300, got 'ten'",
            id="wrong-type",
        ),
        pytest.param(
            with_spec(limits__maxToolCalls=-5),
            "spec.limits.maxToolCalls: must be between 1 and 100000, got -5",
            id="negative-budget",
        ),
        pytest.param(
            with_spec(limits__maxTokens=0),
            "spec.limits.maxTokens: must be between 1 and",
            id="zero-token-budget",
        ),
        pytest.param(
            with_spec(mode="crowd"),
            "spec.mode: must be one of swarm, single, got 'crowd'",
            id="unknown-mode",
        ),
        pytest.param(
            with_spec(subagents__pool=""),
            "spec.subagents.pool: must name a ModelPool",
            id="empty-pool",
        ),
        pytest.param(
            with_spec(retry__maxAttempts=0),
            "spec.retry.maxAttempts: must be between 1 and 100, got 0",
            id="no-attempts",
        ),
        pytest.param(
            with_spec(retry__initialIntervalSeconds=10, retry__maximumIntervalSeconds=1),
            "spec.retry.maximumIntervalSeconds: must be greater than or equal to",
            id="interval-order",
        ),
        pytest.param(
            with_spec(subagent={"pool": "x"}),
            "spec.subagent: unknown field",
            id="misspelt-field",
        ),
        pytest.param(
            with_spec(tools="search"), "spec.tools: must be a list of strings", id="tools-not-list"
        ),
        pytest.param(
            {**VALID, "apiVersion": "v1"}, "apiVersion: must be 'kswarm.dev/v1alpha1'", id="api"
        ),
        pytest.param({**VALID, "spec": None}, "spec: is required", id="no-spec"),
    ],
)
def test_invalid_manifests_name_the_field(manifest: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_manifest(manifest)
    assert message in str(e.value)


def test_unknown_tools_and_pools_are_refused_when_known_ones_are_given() -> None:
    with pytest.raises(SpecError, match=r"spec.tools\[1\]: unknown tool 'rm_rf'"):
        parse_manifest(with_spec(tools=["search", "rm_rf"]), known_tools=["search"])
    with pytest.raises(
        SpecError, match=r"spec\.subagents\.pool: unknown pool 'gpu'; known pools: default"
    ):
        parse_manifest(with_spec(subagents__pool="gpu"), known_pools=["default"])


def test_a_pool_may_be_named_with_its_namespace_and_nothing_deeper() -> None:
    spec = parse_manifest(with_spec(orchestrator__pool="team-a/fast")).spec
    assert spec.orchestrator.pool == "team-a/fast"
    for bad in ("team-a/", "/fast", "a/b/c"):
        with pytest.raises(SpecError, match=r"spec\.subagents\.pool: must be a pool name"):
            parse_manifest(with_spec(subagents__pool=bad))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: kswarm.dev/v1alpha1\nkind: SwarmJob\nspec:\n  task: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML at line"):
        load_manifest_file(str(f))


def test_a_file_without_a_swarmjob_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "pool.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(SpecError, match="no document of kind SwarmJob"):
        load_manifest_file(str(f))


def test_spec_round_trips_through_the_manifest_form() -> None:
    spec = parse_manifest(with_spec(subagents__tools=["search"], limits__maxTokens=10)).spec
    again = parse_manifest({**VALID, "spec": spec.to_manifest_spec()}).spec
    assert again == spec
