"""The rules the operator writes status by, checked without a cluster (pure functions).

They pin what the e2e tests read back from a cluster: conditions keep
their transition time while their status holds, the result is cut to the CRD's 4096
characters, only changed fields are written, and pool children get valid names.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kswarm.ledger import JobCounters
from kswarm.operator import deployments
from kswarm.operator import status as job_status
from kswarm.operator.runtime import OperatorConfig
from kswarm.workflows import SwarmJobResult

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(phase: str = "Succeeded", reason: str | None = None, text: str = "ok") -> SwarmJobResult:
    return SwarmJobResult(
        name="j",
        uid="u",
        phase=phase,
        reason=reason,
        critical_steps=6,
        total_steps=18,
        speedup=3.0,
        stages=[],
        subagents_spawned=4,
        subagents_succeeded=4,
        subagents_failed=0,
        model_seconds=1.0,
        wall_seconds=2.5,
        quality=None,
        result=text,
    )


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = job_status.set_conditions(
        None, [{"type": "Running", "status": "True", "reason": "A"}], now=T0, generation=1
    )
    later = T0 + timedelta(minutes=5)
    same = job_status.set_conditions(
        first, [{"type": "Running", "status": "True", "reason": "B"}], now=later, generation=1
    )
    flipped = job_status.set_conditions(
        same, [{"type": "Running", "status": "False", "reason": "C"}], now=later, generation=1
    )
    assert same[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert same[0]["reason"] == "B"
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


@pytest.mark.parametrize(
    ("phase", "reason", "condition", "code"),
    [
        pytest.param("Succeeded", None, "Succeeded", "Succeeded", id="succeeded"),
        pytest.param(
            "Failed",
            "DeadlineExceeded: spec.limits.deadlineSeconds (5s)",
            "Failed",
            "DeadlineExceeded",
            id="deadline",
        ),
        pytest.param(
            "Cancelled", "Cancelled: the job was cancelled", "Failed", "Cancelled", id="cancelled"
        ),
        pytest.param("Failed", "something odd happened", "Failed", "Failed", id="free-text"),
    ],
)
def test_the_final_status_names_its_outcome_in_a_condition(
    phase: str, reason: str | None, condition: str, code: str
) -> None:
    final = job_status.final_status(
        result(phase, reason),
        JobCounters(),
        old_conditions=None,
        finished_at=T0,
        now=T0,
        generation=1,
    )
    conds = {c["type"]: c for c in final["conditions"]}
    assert final["phase"] == phase and final["reason"] == code
    assert conds[condition]["status"] == "True" and conds[condition]["reason"] == code
    assert conds["Running"]["status"] == "False"
    assert final["finishedAt"] == "2026-01-02T03:04:05Z"


def test_the_result_is_cut_to_the_crd_limit() -> None:
    final = job_status.final_status(
        result(text="x" * 10_000),
        JobCounters(),
        old_conditions=None,
        finished_at=T0,
        now=T0,
        generation=None,
    )
    assert len(final["result"]) == job_status.RESULT_LIMIT


def test_only_changed_fields_are_written() -> None:
    old = {"phase": "Running", "speedup": 3, "subagents": {"spawned": 4, "running": 2}}
    new = {"phase": "Running", "speedup": 3.0, "subagents": {"spawned": 4, "running": 1}}
    assert job_status.changed_fields(old, new) == {"subagents": {"spawned": 4, "running": 1}}


@pytest.mark.parametrize(
    ("model", "parser"),
    [
        pytest.param("Qwen/Qwen2.5-7B-Instruct", "hermes", id="qwen"),
        pytest.param("meta-llama/Llama-3.1-8B-Instruct", "llama3_json", id="llama3"),
        pytest.param("mistralai/Mistral-7B-Instruct-v0.3", "mistral", id="mistral"),
        pytest.param("moonshotai/Kimi-K2-Instruct", "kimi_k2", id="kimi"),
        pytest.param("some/unknown-model", "hermes", id="default"),
    ],
)
def test_a_managed_pool_picks_the_tool_call_parser_of_its_model(model: str, parser: str) -> None:
    assert deployments.tool_call_parser(model) == parser


def test_children_of_a_long_pool_name_still_get_valid_names_and_labels() -> None:
    pool = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "p" * 200, "namespace": "ns", "uid": "u-1"},
        "spec": {"model": "m", "simulator": {}},
    }
    dep, svc = deployments.render_children(pool, image="img")
    assert dep["metadata"]["name"] == svc["metadata"]["name"]
    assert len(dep["metadata"]["name"]) <= 63
    assert all(len(v) <= 63 for v in dep["metadata"]["labels"].values())


def test_the_operator_reads_its_intervals_and_pools_from_the_environment() -> None:
    config = OperatorConfig.from_env(
        {
            "KSWARM_WATCH_NAMESPACES": "a, b",
            "KSWARM_STATIC_POOLS": "default,slow",
            "KSWARM_STATUS_INTERVAL": "0.5",
        }
    )
    assert config.watch_namespaces == ("a", "b") and not config.clusterwide
    assert config.static_pools == frozenset({"default", "slow"})
    assert config.status_interval == 0.5 and config.cancel_timeout == 30.0


def test_the_operator_reads_where_the_pool_keys_go_from_the_environment() -> None:
    from kswarm.errors import ConfigError

    default = OperatorConfig.from_env({})
    assert (default.pool_keys_secret, default.pool_keys_dir) == (
        "kswarm-pool-keys",
        "/etc/kswarm/pool-keys",
    )
    config = OperatorConfig.from_env(
        {"KSWARM_POOL_KEYS_SECRET": "keys", "KSWARM_POOL_KEYS_DIR": "/run/keys/"}
    )
    assert (config.pool_keys_secret, config.pool_keys_dir) == ("keys", "/run/keys")
    with pytest.raises(ConfigError, match="KSWARM_POOL_KEYS_DIR: must be an absolute path"):
        OperatorConfig.from_env({"KSWARM_POOL_KEYS_DIR": "keys"})


@pytest.mark.parametrize(
    ("mode", "variable"),
    [
        pytest.param({"replicas": 1}, "VLLM_API_KEY", id="managed"),
        pytest.param({"simulator": {}}, "KSWARM_SIM_API_KEY", id="simulator"),
    ],
)
def test_a_pool_s_own_server_requires_the_key_of_its_api_key_secret(
    mode: dict[str, object], variable: str
) -> None:
    spec = {"model": "m", **mode, "apiKeySecret": {"name": "k", "key": "token"}}
    pool = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": spec,
    }
    dep, _ = deployments.render_children(pool, image="img")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["env"] == [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": "k", "key": "token"}}}
    ]
    del spec["apiKeySecret"]
    dep, _ = deployments.render_children(pool, image="img")
    assert "env" not in dep["spec"]["template"]["spec"]["containers"][0]
