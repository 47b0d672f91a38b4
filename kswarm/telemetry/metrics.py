"""Prometheus metrics of the worker and the operator: tokens, calls, latency, load, jobs.

Traces answer "where did this job spend its time"; metrics answer "how is the platform doing"
across every job at once, and alert on it. Each process that does work (``kswarm worker``,
``kswarm operator``) serves ``/metrics`` with :func:`start_metrics_server` on
``KSWARM_METRICS_PORT``. The names::

    kswarm_tokens_total{pool, direction}                  input / output tokens
    kswarm_model_calls_total{pool, replica, status}       every attempt; status ok, http_503, ...
    kswarm_model_call_latency_seconds{pool}               histogram, request to last byte
    kswarm_model_call_ttft_seconds{pool}                  histogram, time to first token
    kswarm_model_calls_in_flight{pool}                    model steps running in this process
    kswarm_tool_calls_total{tool, status}                 succeeded, failed, refused,
                                                          deduplicated, error
    kswarm_tool_call_duration_seconds{tool}               histogram
    kswarm_jobs_started_total, kswarm_jobs_finished_total{phase}
    kswarm_jobs{namespace, phase}                         from the ledger, at scrape time

The recording functions are what the engine calls; most are called for it by
:mod:`kswarm.telemetry.interceptors` at activity boundaries. All of them cost a label lookup and
an addition: cheap enough to stay on always.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "LedgerJobsCollector",
    "in_flight",
    "record_job_finished",
    "record_job_started",
    "record_model_attempt",
    "record_tokens",
    "record_tool_call",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    320.0,
)
TTFT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
)
TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)

TOKENS = Counter("kswarm_tokens", "Model tokens, by pool and direction", ["pool", "direction"])
MODEL_CALLS = Counter(
    "kswarm_model_calls",
    "Model-call attempts, by pool, replica and outcome",
    ["pool", "replica", "status"],
)
MODEL_LATENCY = Histogram(
    "kswarm_model_call_latency_seconds",
    "Model-call attempt latency, request to last byte",
    ["pool"],
    buckets=LATENCY_BUCKETS,
)
MODEL_TTFT = Histogram(
    "kswarm_model_call_ttft_seconds",
    "Time to the first token of streamed model calls",
    ["pool"],
    buckets=TTFT_BUCKETS,
)
IN_FLIGHT = Gauge(
    "kswarm_model_calls_in_flight", "Model calls running in this process, by pool", ["pool"]
)
TOOL_CALLS = Counter("kswarm_tool_calls", "Tool calls, by tool and outcome", ["tool", "status"])
TOOL_DURATION = Histogram(
    "kswarm_tool_call_duration_seconds", "Tool-call duration", ["tool"], buckets=TOOL_BUCKETS
)
JOBS_STARTED = Counter("kswarm_jobs_started", "Jobs started by this process")
JOBS_FINISHED = Counter("kswarm_jobs_finished", "Jobs finished by this process", ["phase"])


class AttemptLike(Protocol):
    """What :func:`record_model_attempt` reads (``kswarm.llm.chats.Attempt`` has it)."""

    replica: str | None
    outcome: str
    latency_seconds: float
    ttft_seconds: float | None


def record_model_attempt(pool: str, attempt: AttemptLike) -> None:
    """One model-call attempt ended (call it from the client's ``on_attempt`` hook)."""
    MODEL_CALLS.labels(pool, attempt.replica or "", attempt.outcome).inc()
    if attempt.latency_seconds:
        MODEL_LATENCY.labels(pool).observe(attempt.latency_seconds)
    if attempt.ttft_seconds is not None:
        MODEL_TTFT.labels(pool).observe(attempt.ttft_seconds)


def record_tokens(pool: str, input_tokens: int, output_tokens: int) -> None:
    if input_tokens:
        TOKENS.labels(pool, "input").inc(input_tokens)
    if output_tokens:
        TOKENS.labels(pool, "output").inc(output_tokens)


@contextlib.contextmanager
def in_flight(pool: str) -> Iterator[None]:
    """Count a model call of ``pool`` as in flight for the block."""
    gauge = IN_FLIGHT.labels(pool)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def record_tool_call(tool: str, status: str, seconds: float | None = None) -> None:
    TOOL_CALLS.labels(tool, status).inc()
    if seconds is not None:
        TOOL_DURATION.labels(tool).observe(seconds)


def record_job_started() -> None:
    JOBS_STARTED.inc()


def record_job_finished(phase: str) -> None:
    JOBS_FINISHED.labels(phase).inc()


class LedgerJobsCollector(Collector):
    """``kswarm_jobs{namespace, phase}``: jobs in the ledger, counted at scrape time.

    Counters of one process cannot say how many jobs are Running across the platform; the
    ledger can. One small ``GROUP BY`` per scrape, on a synchronous engine of its own.
    """

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        from kswarm.ledger.engines import sync_url

        self._engine = create_engine(sync_url(url), pool_size=1, max_overflow=0)

    def collect(self) -> Iterable[Metric]:
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from kswarm.ledger.models import Job

        family = GaugeMetricFamily(
            "kswarm_jobs",
            "Jobs in the ledger, by namespace and phase",
            labels=["namespace", "phase"],
        )
        q = select(Job.namespace, Job.phase, func.count()).group_by(Job.namespace, Job.phase)
        try:
            with self._engine.connect() as conn:
                for namespace, phase, n in conn.execute(q):
                    family.add_metric([str(namespace), str(phase)], float(n))
        except SQLAlchemyError as e:  # a scrape must not fail because the ledger blinked
            log.warning("kswarm_jobs: ledger unavailable: %s", str(e).splitlines()[0])
        yield family

    def close(self) -> None:
        self._engine.dispose()


def start_metrics_server(
    port: int,
    *,
    addr: str = "0.0.0.0",
    ledger_url: str | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``addr:port`` in a daemon thread; return ``(server, thread)``.

    ``port`` 0 picks a free port (``server.server_port``). With ``ledger_url``, the page also
    carries ``kswarm_jobs`` from the ledger (:class:`LedgerJobsCollector`), registered once.
    """
    from prometheus_client import start_http_server

    if ledger_url is not None:
        global _jobs_collector
        if _jobs_collector is None:
            _jobs_collector = LedgerJobsCollector(ledger_url)
            registry.register(_jobs_collector)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    log.info("metrics on %s:%d/metrics", addr, server.server_port)
    return server, thread


_jobs_collector: LedgerJobsCollector | None = None
