"""The recording functions move the Prometheus series the dashboards and alerts read."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from kswarm.telemetry import metrics


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Attempt:
    replica: str | None
    outcome: str
    latency_seconds: float
    ttft_seconds: float | None


def test_a_model_attempt_counts_by_replica_and_outcome_and_times_its_latency() -> None:
    before = value("kswarm_model_calls_total", pool="u1", replica="r1", status="ok")
    metrics.record_model_attempt("u1", Attempt("r1", "ok", 0.2, 0.05))
    metrics.record_model_attempt("u1", Attempt(None, "no_replica", 0.0, None))
    assert value("kswarm_model_calls_total", pool="u1", replica="r1", status="ok") == before + 1
    assert value("kswarm_model_calls_total", pool="u1", replica="", status="no_replica") >= 1
    assert value("kswarm_model_call_latency_seconds_count", pool="u1") >= 1
    assert value("kswarm_model_call_ttft_seconds_bucket", pool="u1", le="0.05") >= 1


def test_in_flight_goes_back_down_when_the_call_fails() -> None:
    with pytest.raises(RuntimeError):
        with metrics.in_flight("u2"):
            assert value("kswarm_model_calls_in_flight", pool="u2") == 1
            raise RuntimeError
    assert value("kswarm_model_calls_in_flight", pool="u2") == 0


def test_tokens_tools_and_jobs_are_counted() -> None:
    metrics.record_tokens("u3", 100, 7)
    metrics.record_tool_call("u3-tool", "failed", 0.01)
    metrics.record_job_finished("Failed")
    assert value("kswarm_tokens_total", pool="u3", direction="input") == 100
    assert value("kswarm_tokens_total", pool="u3", direction="output") == 7
    assert value("kswarm_tool_calls_total", tool="u3-tool", status="failed") == 1
    assert value("kswarm_tool_call_duration_seconds_count", tool="u3-tool") == 1
    assert value("kswarm_jobs_finished_total", phase="Failed") >= 1
