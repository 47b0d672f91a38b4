"""The simulator's ``/metrics`` page, under vLLM's own metric names.

The router's least-load policy, the dashboard and the benchmarks read these exactly as they read
a real vLLM server, so names, types and labels follow vLLM (v1 engine): gauges
``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``;
counters ``vllm:prefix_cache_queries_total`` and ``vllm:prefix_cache_hits_total`` (in tokens),
``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``, ``vllm:request_success_total``
(by ``finished_reason``); histograms ``vllm:time_to_first_token_seconds``,
``vllm:inter_token_latency_seconds`` and ``vllm:e2e_request_latency_seconds``. Every sample has a
``model_name`` label. Durations are the modelled ones, already multiplied by the time scale.

Each replica owns its counters (replicas share nothing), so this is a few plain fields and a text
renderer, not a ``prometheus_client`` registry: a histogram here can take many equal
observations at once, which a batch of output tokens needs.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Histogram", "SimMetrics"]

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


@dataclass
class Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float, times: int = 1) -> None:
        """Record ``value`` ``times`` times."""
        if times <= 0:
            return
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.total += value * times
        self.count += times

    def render(self, name: str, labels: str) -> list[str]:
        lines = []
        cumulative = 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            cumulative += n
            lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        lines.append(f"{name}_sum{{{labels}}} {self.total!r}")
        return lines


@dataclass
class SimMetrics:
    model_name: str
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    success: dict[str, int] = field(default_factory=dict)
    """Finished requests by ``finished_reason`` (``stop``, ``length``, ``abort``)."""
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))

    def finished(self, reason: str) -> None:
        self.success[reason] = self.success.get(reason, 0) + 1

    def render(self, *, running: int, waiting: int, kv_cache_usage: float) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        labels = f'engine="0",model_name="{_escape(self.model_name)}"'
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, lines: list[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(lines)

        def one(name: str, value: float) -> list[str]:
            return [f"{name}{{{labels}}} {value!r}"]

        gauges = (
            ("vllm:num_requests_running", "Requests in model execution batches.", running),
            ("vllm:num_requests_waiting", "Requests waiting to be processed.", waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent.", kv_cache_usage),
        )
        for name, help_text, value in gauges:
            family(name, "gauge", help_text, one(name, float(value)))
        counters = (
            (
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in tokens.",
                self.prefix_cache_queries,
            ),
            ("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.", self.prefix_cache_hits),
            ("vllm:prompt_tokens", "Prefill tokens processed.", self.prompt_tokens),
            ("vllm:generation_tokens", "Generation tokens processed.", self.generation_tokens),
        )
        for name, help_text, count in counters:
            family(name, "counter", help_text, one(f"{name}_total", float(count)))
        success = [
            f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {float(n)!r}'
            for reason, n in sorted(self.success.items())
        ]
        family("vllm:request_success", "counter", "Successfully processed requests.", success)
        histograms = (
            ("vllm:time_to_first_token_seconds", "Time to first token in seconds.", self.ttft),
            ("vllm:inter_token_latency_seconds", "Inter-token latency in seconds.", self.itl),
            ("vllm:e2e_request_latency_seconds", "End-to-end request latency.", self.e2e),
        )
        for name, help_text, histogram in histograms:
            family(name, "histogram", help_text, histogram.render(name, labels))
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
