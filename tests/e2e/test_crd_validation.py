"""The CRDs in crds/ enforce the SwarmJob and ModelPool contracts in a real API server.

Every invalid manifest must be refused by ``kubectl apply`` with a message that names the
offending field, so a person can fix it without reading the schema.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlane

API = "kswarm.dev/v1alpha1"
_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def swarmjob(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"task": "Summarise the three newest papers on agent swarms."}
    body.update(spec)
    return {"apiVersion": API, "kind": "SwarmJob", "metadata": {"name": name}, "spec": body}


def modelpool(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "Qwen/Qwen2.5-7B-Instruct"}
    body.update(spec)
    return {"apiVersion": API, "kind": "ModelPool", "metadata": {"name": name}, "spec": body}


def without(manifest: dict[str, Any], *path: str) -> dict[str, Any]:
    m = copy.deepcopy(manifest)
    node = m
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return m


def apply(cp: ControlPlane, manifest: dict[str, Any], check: bool = True) -> Any:
    return cp.kubectl("apply", "-f", "-", input=json.dumps(manifest), check=check)


# (setup manifest applied first and expected to succeed, or None; invalid manifest;
#  substrings the refusal must contain)
INVALID = [
    pytest.param(
        None,
        without(swarmjob("no-task"), "spec", "task"),
        ["spec.task", "Required value"],
        id="missing-task",
    ),
    pytest.param(
        None,
        swarmjob("blank-task", task="   "),
        ["spec.task", "blank"],
        id="blank-task",
    ),
    pytest.param(
        None,
        swarmjob("too-many-subagents", subagents={"maxConcurrent": 1000}),
        ["spec.subagents.maxConcurrent", "less than or equal to 300"],
        id="maxConcurrent-1000",
    ),
    pytest.param(
        None,
        swarmjob("negative-tool-calls", limits={"maxToolCalls": -5}),
        ["spec.limits.maxToolCalls", "greater than or equal to 1"],
        id="negative-maxToolCalls",
    ),
    pytest.param(
        None,
        swarmjob("unknown-mode", mode="hive"),
        ["spec.mode", 'Unsupported value: "hive"', '"swarm"', '"single"'],
        id="unknown-mode",
    ),
    pytest.param(
        None,
        swarmjob("string-max-steps", orchestrator={"maxSteps": "fifty"}),
        ["spec.orchestrator.maxSteps", "integer"],
        id="maxSteps-string",
    ),
    pytest.param(
        None,
        swarmjob("zero-attempts", retry={"maxAttempts": 0}),
        ["spec.retry.maxAttempts", "greater than or equal to 1"],
        id="retry-maxAttempts-0",
    ),
    pytest.param(
        None,
        swarmjob(
            "inverted-backoff", retry={"initialIntervalSeconds": 10, "maximumIntervalSeconds": 2}
        ),
        ["spec.retry.maximumIntervalSeconds", "initialIntervalSeconds"],
        id="retry-max-below-initial",
    ),
    pytest.param(
        None,
        swarmjob("unknown-profile", orchestrator={"profile": "chaos"}),
        ["spec.orchestrator.profile", "Unsupported value"],
        id="unknown-orchestrator-profile",
    ),
    pytest.param(
        None,
        swarmjob("long-deadline", limits={"deadlineSeconds": 604801}),
        ["spec.limits.deadlineSeconds", "less than or equal to 604800"],
        id="deadline-over-7-days",
    ),
    pytest.param(
        None,
        swarmjob("empty-pool", subagents={"pool": ""}),
        ["spec.subagents.pool", "must name a ModelPool"],
        id="empty-subagent-pool",
    ),
    pytest.param(
        None,
        swarmjob("empty-orch-pool", orchestrator={"pool": ""}),
        ["spec.orchestrator.pool", "must name a ModelPool"],
        id="empty-orchestrator-pool",
    ),
    pytest.param(
        None,
        swarmjob("unknown-field", subagent={"maxConcurrent": 3}),
        ['unknown field "spec.subagent"'],
        id="unknown-field-typo",
    ),
    pytest.param(
        None,
        swarmjob("tool-with-space", tools=["web search"]),
        ["spec.tools[0]", "should match", '"web search"'],
        id="tool-name-with-space",
    ),
    pytest.param(
        None,
        swarmjob("subagent-tool-wildcard", subagents={"tools": ["search", "github__a*"]}),
        ["spec.subagents.tools[1]", "should match"],
        id="subagent-tool-partial-wildcard",
    ),
    pytest.param(
        swarmjob("immutable"),
        swarmjob("immutable", task="Something else entirely."),
        ["spec", "spec is immutable after creation; delete and re-create the SwarmJob"],
        id="spec-edit-after-create",
    ),
    pytest.param(
        None,
        modelpool("both", endpoint="http://vllm:8000/v1", replicas=2),
        ["set exactly one of spec.endpoint, spec.replicas (managed vLLM) or spec.simulator"],
        id="pool-endpoint-and-replicas",
    ),
    pytest.param(
        None,
        modelpool("none"),
        ["set exactly one of spec.endpoint, spec.replicas (managed vLLM) or spec.simulator"],
        id="pool-no-backend",
    ),
    pytest.param(
        None,
        modelpool("no-scheme", endpoint="vllm.inference.svc:8000/v1"),
        ["spec.endpoint", "^https?://"],
        id="pool-endpoint-without-http",
    ),
    pytest.param(
        None,
        modelpool("bad-router", endpoint="http://vllm:8000/v1", router="random"),
        ["spec.router", 'Unsupported value: "random"', '"prefix-affinity"'],
        id="pool-unknown-router",
    ),
    pytest.param(
        None,
        without(modelpool("no-model", endpoint="http://vllm:8000/v1"), "spec", "model"),
        ["spec.model", "Required value"],
        id="pool-missing-model",
    ),
    pytest.param(
        None,
        modelpool("too-many-replicas", replicas=65),
        ["spec.replicas", "less than or equal to 64"],
        id="pool-replicas-65",
    ),
    pytest.param(
        None,
        modelpool("args-no-replicas", endpoint="http://vllm:8000/v1", vllmArgs=["--foo"]),
        ["spec.resources and spec.vllmArgs apply only to managed vLLM pools"],
        id="pool-vllmArgs-without-replicas",
    ),
    pytest.param(
        None,
        modelpool("min-over-max", replicas=2, autoscaling={"minReplicas": 5, "maxReplicas": 3}),
        ["spec.autoscaling", "minReplicas must not exceed spec.autoscaling.maxReplicas"],
        id="pool-autoscaling-min-over-max",
    ),
    pytest.param(
        None,
        modelpool("scale-to-zero", replicas=1, autoscaling={"minReplicas": 0, "maxReplicas": 3}),
        ["spec.autoscaling.minReplicas", "greater than or equal to 1"],
        id="pool-autoscaling-min-0",
    ),
    pytest.param(
        None,
        modelpool("max-65", replicas=1, autoscaling={"maxReplicas": 65}),
        ["spec.autoscaling.maxReplicas", "less than or equal to 64"],
        id="pool-autoscaling-max-65",
    ),
    pytest.param(
        None,
        modelpool("no-max", replicas=1, autoscaling={"minReplicas": 2}),
        ["spec.autoscaling.maxReplicas", "Required value"],
        id="pool-autoscaling-without-max",
    ),
    pytest.param(
        None,
        modelpool(
            "zero-target", replicas=1, autoscaling={"maxReplicas": 2, "targetWaitingPerReplica": 0}
        ),
        ["spec.autoscaling.targetWaitingPerReplica", "greater than 0"],
        id="pool-autoscaling-target-0",
    ),
    pytest.param(
        None,
        modelpool(
            "scaled-endpoint", endpoint="http://vllm:8000/v1", autoscaling={"maxReplicas": 2}
        ),
        ["spec.autoscaling applies only to managed vLLM pools"],
        id="pool-autoscaling-on-an-endpoint",
    ),
    pytest.param(
        None,
        swarmjob("user-no-function", evaluation={"scorer": "user"}),
        ["spec.evaluation.function must name the scorer as module:function"],
        id="user-scorer-without-function",
    ),
    pytest.param(
        None,
        swarmjob("f1-no-key", evaluation={"scorer": "item-f1"}),
        ["spec.evaluation.answerKey is required by the item-f1 and exact-match scorers"],
        id="item-f1-without-answer-key",
    ),
    pytest.param(
        None,
        swarmjob("epoch-past-end", rollout={"samples": 2, "epoch": 3, "epochs": 3}),
        ["spec.rollout.epoch counts from 0 and must be less than spec.rollout.epochs"],
        id="rollout-epoch-past-the-end",
    ),
    pytest.param(
        None,
        swarmjob("zero-critical", limits={"maxCriticalSteps": 0}),
        ["spec.limits.maxCriticalSteps", "greater than or equal to 1"],
        id="max-critical-steps-0",
    ),
    pytest.param(
        None,
        modelpool("zero-rps", simulator={}, rateLimit={"requestsPerSecond": 0}),
        ["spec.rateLimit.requestsPerSecond", "greater than 0"],
        id="pool-zero-rate-limit",
    ),
]


@pytest.mark.parametrize(("setup", "manifest", "expected"), INVALID)
def test_invalid_manifest_is_refused(
    control_plane: ControlPlane,
    setup: dict[str, Any] | None,
    manifest: dict[str, Any],
    expected: list[str],
) -> None:
    if setup is not None:
        apply(control_plane, setup)
    proc = apply(control_plane, manifest, check=False)
    assert proc.returncode != 0, f"API server accepted an invalid manifest:\n{proc.stdout}"
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in refusal:\n{proc.stderr}"
    if setup is None:
        kind = manifest["kind"].lower()
        got = control_plane.kubectl(
            "get", kind, manifest["metadata"]["name"], "--ignore-not-found", "-o", "name"
        )
        assert got.stdout.strip() == "", f"refused object exists anyway: {got.stdout}"


def test_a_rollout_job_keeps_its_answer_key_rows_and_gets_rollout_defaults(
    control_plane: ControlPlane,
) -> None:
    name = _name("rollout")
    rows = [{"entity": "Acme", "founded": 1990, "ceo": "Ann Lee"}]
    evaluation = {"scorer": "item-f1", "answerKey": {"rows": rows}, "successThreshold": 0.9}
    apply(control_plane, swarmjob(name, evaluation=evaluation, rollout={"samples": 4}))
    got = json.loads(control_plane.kubectl("get", "swarmjob", name, "-o", "json").stdout)
    spec = got["spec"]
    assert spec["evaluation"]["answerKey"]["rows"] == rows  # free-form rows are not pruned
    assert spec["rollout"] == {
        "samples": 4,
        "epoch": 0,
        "epochs": 1,
        "lambdaStart": 0.1,
        "lambdaEnd": 0.0,
        "temperature": 1.0,
        "seed": 0,
    }


def test_valid_swarmjob_gets_defaults(control_plane: ControlPlane) -> None:
    name = _name("defaults")
    apply(control_plane, swarmjob(name))
    paths = {
        "mode": "{.spec.mode}",
        "orchestrator.pool": "{.spec.orchestrator.pool}",
        "orchestrator.maxSteps": "{.spec.orchestrator.maxSteps}",
        "orchestrator.profile": "{.spec.orchestrator.profile}",
        "subagents.pool": "{.spec.subagents.pool}",
        "subagents.maxConcurrent": "{.spec.subagents.maxConcurrent}",
        "subagents.maxSteps": "{.spec.subagents.maxSteps}",
        "tools": "{.spec.tools}",
        "limits.maxToolCalls": "{.spec.limits.maxToolCalls}",
        "retry.maxAttempts": "{.spec.retry.maxAttempts}",
        "retry.initialIntervalSeconds": "{.spec.retry.initialIntervalSeconds}",
        "retry.backoffCoefficient": "{.spec.retry.backoffCoefficient}",
        "retry.maximumIntervalSeconds": "{.spec.retry.maximumIntervalSeconds}",
    }
    template = "|".join(paths.values())
    out = control_plane.kubectl("get", "sj", name, "-o", f"jsonpath={template}").stdout
    got = dict(zip(paths, out.split("|"), strict=True))
    assert got == {
        "mode": "swarm",
        "orchestrator.pool": "default",
        "orchestrator.maxSteps": "50",
        "orchestrator.profile": "swarm",
        "subagents.pool": "default",
        "subagents.maxConcurrent": "100",
        "subagents.maxSteps": "30",
        "tools": "[]",
        "limits.maxToolCalls": "1500",
        "retry.maxAttempts": "5",
        "retry.initialIntervalSeconds": "1",
        "retry.backoffCoefficient": "2",
        "retry.maximumIntervalSeconds": "30",
    }


def test_explicit_values_are_kept(control_plane: ControlPlane) -> None:
    name = _name("explicit")
    apply(
        control_plane,
        swarmjob(
            name,
            mode="single",
            subagents={"maxConcurrent": 7, "tools": ["search", "fetch"]},
            limits={"maxToolCalls": 10, "maxTokens": 5000, "deadlineSeconds": 60},
            retry={"initialIntervalSeconds": 0.5, "maximumIntervalSeconds": 0.5},
        ),
    )
    out = control_plane.kubectl(
        "get",
        "swarmjob",
        name,
        "-o",
        "jsonpath={.spec.mode} {.spec.subagents.maxConcurrent} {.spec.limits.maxToolCalls} "
        "{.spec.limits.maxTokens} {.spec.retry.maximumIntervalSeconds}",
    ).stdout
    assert out.split() == ["single", "7", "10", "5000", "0.5"]
    # Re-applying the identical manifest is not an edit and must stay allowed.
    apply(
        control_plane,
        swarmjob(
            name,
            mode="single",
            subagents={"maxConcurrent": 7, "tools": ["search", "fetch"]},
            limits={"maxToolCalls": 10, "maxTokens": 5000, "deadlineSeconds": 60},
            retry={"initialIntervalSeconds": 0.5, "maximumIntervalSeconds": 0.5},
        ),
    )


def test_get_swarmjobs_prints_columns_and_status(control_plane: ControlPlane) -> None:
    name = _name("columns")
    apply(control_plane, swarmjob(name))
    status = {
        "status": {
            "phase": "Running",
            "subagents": {"spawned": 12, "succeeded": 3, "failed": 0, "running": 9},
            "toolCalls": {"total": 345, "failed": 2, "deduplicated": 1},
            "criticalSteps": 8,
            "totalSteps": 36,
            "speedup": 4.5,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "Running",
                    "message": "sub-agents are working",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    control_plane.kubectl(
        "patch", "sj", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    out = control_plane.kubectl("get", "sj", name).stdout
    header, row = out.splitlines()[:2]
    # Columns are separated by at least two spaces; names may hold one ("TOOL CALLS").
    assert re.split(r"\s{2,}", header.strip()) == [
        "NAME",
        "PHASE",
        "SUB-AGENTS",
        "TOOL CALLS",
        "CRITICAL STEPS",
        "SPEEDUP",
        "AGE",
    ], out
    assert row.split()[:6] == [name, "Running", "12", "345", "8", "4.5"], out


def test_status_is_validated(control_plane: ControlPlane) -> None:
    name = _name("status")
    apply(control_plane, swarmjob(name))
    proc = control_plane.kubectl(
        "patch",
        "sj",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Exploded"}}),
        check=False,
    )
    assert proc.returncode != 0
    assert "status.phase" in proc.stderr and "Unsupported value" in proc.stderr, proc.stderr


def test_status_is_not_writable_through_apply(control_plane: ControlPlane) -> None:
    """The status subresource is on: a main-resource write drops status."""
    name = _name("nostatus")
    manifest = swarmjob(name)
    manifest["status"] = {"phase": "Succeeded"}
    apply(control_plane, manifest)
    out = control_plane.kubectl("get", "sj", name, "-o", "jsonpath={.status.phase}").stdout
    assert out == ""


def test_explain_shows_descriptions(control_plane: ControlPlane) -> None:
    # explain wraps text at its own width; compare with whitespace collapsed.
    out = " ".join(control_plane.kubectl("explain", "swarmjob.spec.subagents").stdout.split())
    assert "The sub-agents the orchestrator spawns" in out, out
    for field in ("maxConcurrent", "maxSteps", "pool", "model", "tools"):
        assert field in out, f"{field} missing from:\n{out}"
    assert "Sub-agents running at once, 1 to 300 (default 100)" in out, out

    out = " ".join(control_plane.kubectl("explain", "modelpool.spec.router").stdout.split())
    assert "prefix-affinity" in out and "KV-cache" in out, out


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param({"endpoint": "https://api.example.test/v1"}, id="endpoint"),
        pytest.param(
            {"replicas": 2, "resources": {"limits": {"nvidia.com/gpu": 1}}, "vllmArgs": ["-tp=1"]},
            id="managed-vllm",
        ),
        pytest.param({"simulator": {"timeScale": 0, "seed": 7}}, id="simulator"),
        pytest.param(
            {"replicas": 1, "autoscaling": {"minReplicas": 1, "maxReplicas": 1}},
            id="managed-autoscaled-min-equals-max",
        ),
    ],
)
def test_valid_modelpools(control_plane: ControlPlane, backend: dict[str, Any]) -> None:
    name = _name("pool")
    apply(control_plane, modelpool(name, **backend))
    out = control_plane.kubectl(
        "get", "mp", name, "-o", "jsonpath={.spec.router} {.spec.maxConcurrency}"
    ).stdout
    assert out.split() == ["prefix-affinity", "64"]
    status = {"status": {"phase": "Ready", "readyReplicas": 2, "endpoints": ["http://a:8000/v1"]}}
    control_plane.kubectl(
        "patch", "mp", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    table = control_plane.kubectl("get", "mp", name).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "READY", "PHASE", "AGE"], table
    assert row.split()[:4] == [name, "Qwen/Qwen2.5-7B-Instruct", "2", "Ready"], table


def test_simulator_pool_defaults(control_plane: ControlPlane) -> None:
    name = _name("sim")
    apply(control_plane, modelpool(name, simulator={}))
    out = control_plane.kubectl(
        "get",
        "mp",
        name,
        "-o",
        "jsonpath={.spec.simulator.replicas} {.spec.simulator.maxNumSeqs} "
        "{.spec.simulator.timeScale}",
    ).stdout
    assert out.split() == ["1", "256", "1"]


def test_tool_names_of_the_registry_and_of_tool_servers_are_accepted(
    control_plane: ControlPlane,
) -> None:
    name = _name("tool-names")
    tools = ["search", "write_note", "github__create_issue", "docs__*"]
    apply(control_plane, swarmjob(name, tools=tools, subagents={"tools": tools[1:]}))
    out = control_plane.kubectl(
        "get", "sj", name, "-o", "jsonpath={.spec.tools} {.spec.subagents.tools}"
    ).stdout
    assert [json.loads(part) for part in out.split()] == [tools, tools[1:]]
