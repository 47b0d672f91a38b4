"""The router's ``/metrics`` reader against ``prometheus_client``'s parser on the same pages."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kswarm.llm.replicas import parse_vllm_metrics

# Shaped like a vLLM 0.11 page: two engines, HELP/TYPE lines, histograms, a label value with a
# brace and spaces, and a sample with a timestamp.
VLLM_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-8B"} 7.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-8B"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 3.0
vllm:num_requests_waiting{engine="1",model_name="odd } name, with spaces"} 1.0 1732850000000
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-8B"} 0.25
# HELP vllm:num_requests_running_total Not a gauge the router reads.
# TYPE vllm:num_requests_running_total counter
vllm:num_requests_running_total{engine="0"} 1000.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen3-8B"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen3-8B"} 9.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen3-8B"} 9.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen3-8B"} 0.5
"""


def reference(text: str) -> dict[str, float]:
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            sums[s.name] = sums.get(s.name, 0.0) + float(s.value)
    return sums


def test_reads_the_three_gauges_as_prometheus_client_does() -> None:
    ref = reference(VLLM_PAGE)
    m = parse_vllm_metrics(VLLM_PAGE, scraped_at=12.0)
    assert m.running == ref["vllm:num_requests_running"] == 12.0
    assert m.waiting == ref["vllm:num_requests_waiting"] == 4.0
    assert m.kv_cache_usage == ref["vllm:kv_cache_usage_perc"] == 0.25
    assert m.scraped_at == 12.0


def test_older_vllm_gpu_cache_name_and_unlabelled_samples() -> None:
    page = "vllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.5\n"
    m = parse_vllm_metrics(page, scraped_at=0.0)
    assert (m.running, m.waiting, m.kv_cache_usage) == (2.0, 0.0, 0.5)


def test_simulator_page_matches_prometheus_client() -> None:
    from kswarm.sim.metrics import SimMetrics

    metrics = SimMetrics(model_name="kswarm-sim")
    text = metrics.render(running=17, waiting=4, kv_cache_usage=0.375)
    ref = reference(text)
    m = parse_vllm_metrics(text, scraped_at=0.0)
    assert (m.running, m.waiting, m.kv_cache_usage) == (
        ref["vllm:num_requests_running"],
        ref["vllm:num_requests_waiting"],
        ref["vllm:kv_cache_usage_perc"],
    )
    assert (m.running, m.waiting) == (17.0, 4.0)


@pytest.mark.parametrize(
    "page",
    [
        "",
        "# only comments\nvllm:time_to_first_token_seconds_count 3\n",
        'vllm:num_requests_running{engine="0"}\n',
        "vllm:num_requests_waiting not-a-number\n",
    ],
)
def test_pages_without_readable_gauges_are_errors(page: str) -> None:
    with pytest.raises(ValueError):
        parse_vllm_metrics(page, scraped_at=0.0)
