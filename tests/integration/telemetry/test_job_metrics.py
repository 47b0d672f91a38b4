"""Metrics of real work, scraped from the metrics server and parsed as Prometheus parses them."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from telemetry_support import example, traced_stack

from kswarm.devserver import DevServer
from kswarm.llm.chats import ChatRequest
from kswarm.llm.client import LLMClient
from kswarm.llm.pacing import RetryPolicy
from kswarm.llm.pools import PoolConfig
from kswarm.sim.config import SimConfig
from kswarm.sim.serving import start_replicas, stop_replicas
from kswarm.telemetry import metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(port: int) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return str(r.read().decode())

    out: Samples = {}
    for family in text_string_to_metric_families(await asyncio.to_thread(get)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_jobs_tokens_tool_calls_and_phase_are_scraped_from_the_metrics_server(
    temporal: DevServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with traced_stack(temporal.address, tmp_path, ledger_url=url) as stack:
        server, _ = metrics.start_metrics_server(0, addr="127.0.0.1", ledger_url=url)
        try:
            port = server.server_port
            before = await _scrape(port)
            inp = stack.job(example("quickstart"))
            result = await stack.run(inp)
            await stack.ledger.flush()
            counters = await stack.ledger.job_counters(inp.uid)
            after = await _scrape(port)
        finally:
            server.shutdown()
    assert result.phase == "Succeeded", result.reason

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    pool = stack.pool
    assert delta("kswarm_tokens_total", pool=pool, direction="input") == counters.tokens_input
    assert delta("kswarm_tokens_total", pool=pool, direction="output") == counters.tokens_output
    searches = counters.by_tool["search"]
    assert delta("kswarm_tool_calls_total", tool="search", status="succeeded") == searches
    assert delta("kswarm_tool_call_duration_seconds_count", tool="search") == searches
    assert _value(after, "kswarm_model_calls_in_flight", pool=pool) == 0
    assert delta("kswarm_jobs_started_total") == 1
    assert delta("kswarm_jobs_finished_total", phase="Succeeded") == 1
    # From the ledger, at scrape time: this test's ledger holds this one job.
    assert _value(after, "kswarm_jobs", namespace=inp.namespace, phase="Succeeded") == 1


async def test_model_call_attempts_are_counted_by_replica_and_outcome() -> None:
    replicas = await start_replicas(1, SimConfig(time_scale=0.0, fail_503_rate=0.5, seed=3))
    pool = PoolConfig(name="metrics-test", model=SimConfig().model, replicas=(replicas[0].url,))
    client = LLMClient()

    async def on_attempt(a: object) -> None:
        metrics.record_model_attempt(pool.name, a)  # type: ignore[arg-type]

    server, _ = metrics.start_metrics_server(0, addr="127.0.0.1")
    try:
        port = server.server_port
        for i in range(6):
            request = ChatRequest(
                model=pool.model, messages=[{"role": "user", "content": f"hi {i}"}], stream=True
            )
            await client.chat(
                pool,
                request,
                retry=RetryPolicy(max_attempts=8, initial_interval=0.001),
                on_attempt=on_attempt,
            )
        samples = await _scrape(port)
    finally:
        server.shutdown()
        await client.aclose()
        await stop_replicas(replicas)
    replica = replicas[0].url
    ok = _value(samples, "kswarm_model_calls_total", pool=pool.name, replica=replica, status="ok")
    busy = _value(
        samples, "kswarm_model_calls_total", pool=pool.name, replica=replica, status="http_503"
    )
    assert ok == 6 and busy >= 1
    assert _value(samples, "kswarm_model_call_latency_seconds_count", pool=pool.name) == ok + busy
    # Streamed answers have a time to first token; refused attempts have none.
    assert _value(samples, "kswarm_model_call_ttft_seconds_count", pool=pool.name) == ok
