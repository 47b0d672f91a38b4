"""The autoscaler of an autoscaled pool, rendered (pure): the quantities and the pod pattern its
KEDA query uses. The e2e tests apply what comes out to a real API server."""

from __future__ import annotations

import re

import pytest

from kswarm.operator import autoscalers, deployments


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(2, "2", id="whole"),
        pytest.param(2.0, "2", id="whole-float"),
        pytest.param(0.5, "500m", id="half"),
        pytest.param(1.25, "1250m", id="milli"),
    ],
)
def test_a_target_becomes_a_kubernetes_quantity(value: float, expected: str) -> None:
    assert autoscalers.quantity(value) == expected


def test_the_pod_pattern_matches_the_pool_s_pods_and_not_those_of_a_longer_named_pool() -> None:
    pattern = autoscalers.pod_pattern("a")
    # Prometheus anchors label regexes at both ends: fullmatch is what it does.
    assert re.fullmatch(pattern, "pool-a-7d9f8c6b5-x2x1z")
    assert not re.fullmatch(pattern, "pool-a-b-7d9f8c6b5-x2x1z")  # the pods of pool "a-b"
    assert not re.fullmatch(pattern, "pool-ab-7d9f8c6b5-x2x1z")


def test_a_long_pool_name_s_pattern_uses_the_deployment_s_shortened_name() -> None:
    name = "a-very-long-pool-name-" * 4
    assert autoscalers.pod_pattern(name).startswith(deployments.child_name(name) + "-")


def test_an_autoscaled_pool_s_deployment_has_no_replicas_and_the_others_keep_theirs() -> None:
    pool = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "q", "namespace": "ns", "uid": "u"},
        "spec": {"model": "m", "replicas": 3},
    }
    (dep, _) = deployments.render_children(pool, image="img")
    assert dep["spec"]["replicas"] == 3
    pool["spec"]["autoscaling"] = {"maxReplicas": 5}
    (dep, _) = deployments.render_children(pool, image="img")
    assert "replicas" not in dep["spec"]
    scaler = autoscalers.render_autoscaler(pool, kind=autoscalers.HPA)
    assert (scaler["spec"]["minReplicas"], scaler["spec"]["maxReplicas"]) == (1, 5)
