"""Tracing is off unless the OTEL_* variables ask for it; spans carry GenAI names and kswarm ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN

from kswarm.errors import ConfigError
from kswarm.telemetry import spans as attr
from kswarm.telemetry import tracing


@pytest.mark.parametrize(
    ("env", "on"),
    [
        pytest.param({}, False, id="nothing-set"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True, id="endpoint"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"}, True, id="signal"
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "console"}, True, id="exporter"),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            False,
            id="exporter-none",
        ),
        pytest.param(
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
            False,
            id="sdk-disabled",
        ),
    ],
)
def test_tracing_is_requested_only_by_the_standard_variables(env: dict[str, str], on: bool) -> None:
    assert tracing.tracing_requested(env) is on


def test_configure_tracing_without_variables_is_off_and_returns_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "_provider", None)
    monkeypatch.setattr(tracing, "_tracer", None)
    monkeypatch.setattr(tracing, "_activity_tracer", None)
    assert tracing.configure_tracing({}) is None
    assert not tracing.enabled()
    with tracing.chat_span(
        job_uid="j", agent_id="a", role="subagent", stage=1, step=1, model="m", pool="p"
    ) as span:
        assert span is INVALID_SPAN  # nothing made, nothing recorded
        tracing.set_usage(span, 1, 2)


def test_the_otlp_endpoint_follows_the_exporter_specification() -> None:
    assert tracing._traces_endpoint({}) == "http://localhost:4318/v1/traces"
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert tracing._traces_endpoint(base) == "http://collector:4318/v1/traces"
    signal = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other/x"}
    assert tracing._traces_endpoint(signal) == "http://other/x"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        pytest.param(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL", id="grpc"
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", id="zipkin"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            id="no-scheme",
        ),
    ],
)
def test_what_kswarm_cannot_export_is_refused_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        tracing._exporters(env)


def test_otlp_and_console_exporters_are_built_from_the_list() -> None:
    exporters = tracing._exporters({"OTEL_TRACES_EXPORTER": "otlp,console"})
    assert [type(e).__name__ for e in exporters] == ["OTLPSpanExporter", "ConsoleSpanExporter"]


@pytest.fixture
def memory() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = tracing._tracer, tracing._activity_tracer
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing._tracer, tracing._activity_tracer = saved


def test_spans_are_named_and_attributed_by_the_genai_conventions(
    memory: InMemorySpanExporter,
) -> None:
    with tracing.job_span(job_uid="j", name="quickstart", namespace="team", mode="swarm"):
        with tracing.agent_span(
            job_uid="j", agent_id="j/s001-000", name="s001-000", role="subagent", stage=1
        ):
            with tracing.chat_span(
                job_uid="j",
                agent_id="j/s001-000",
                role="subagent",
                stage=1,
                step=2,
                model="qwen",
                pool="gpu",
                provider="vllm",
            ) as span:
                tracing.set_usage(span, 120, 30)
            with tracing.tool_span(
                job_uid="j",
                agent_id="j/s001-000",
                step=2,
                index=0,
                tool="search",
                call_id="j/s001-000/2/0",
            ) as span:
                tracing.set_error(span, "tool_failed")
    job, agent, chat, tool = sorted(memory.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert job.name == "invoke_workflow" and job.attributes[attr.OPERATION] == "invoke_workflow"
    assert agent.name == "invoke_agent s001-000" and agent.parent.span_id == job.context.span_id
    assert chat.name == "chat qwen" and chat.parent.span_id == agent.context.span_id
    assert dict(chat.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "vllm",
        "gen_ai.request.model": "qwen",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "kswarm.job.uid": "j",
        "kswarm.agent.id": "j/s001-000",
        "kswarm.agent.role": "subagent",
        "kswarm.stage": 1,
        "kswarm.step": 2,
        "kswarm.pool": "gpu",
    }
    assert tool.name == "execute_tool search"
    assert tool.attributes[attr.TOOL_NAME] == "search"
    assert tool.attributes[attr.TOOL_CALL_ID] == "j/s001-000/2/0"
    assert tool.status.status_code.name == "ERROR"


def test_an_exception_marks_the_span_with_its_error_type(memory: InMemorySpanExporter) -> None:
    with pytest.raises(TimeoutError):
        with tracing.chat_span(
            job_uid="j", agent_id="a", role=None, stage=None, step=1, model="m", pool="p"
        ):
            raise TimeoutError("slow")
    (span,) = memory.get_finished_spans()
    assert span.attributes[attr.ERROR_TYPE] == "TimeoutError"
    assert span.status.status_code.name == "ERROR"
    assert "kswarm.agent.role" not in span.attributes  # None values are left out


@pytest.mark.parametrize(
    ("replicas", "provider"),
    [
        pytest.param(("http://127.0.0.1:8001",), "vllm", id="simulator"),
        pytest.param(("http://vllm-qwen.kswarm.svc:8000",), "vllm", id="vllm-service"),
        pytest.param(("https://api.openai.com",), "openai", id="openai"),
    ],
)
def test_the_provider_of_a_pool_is_openai_only_for_openais_api(
    replicas: tuple[str, ...], provider: str
) -> None:
    assert tracing.provider_for(replicas) == provider


def test_model_call_attempts_become_events_of_the_chat_span(memory: InMemorySpanExporter) -> None:
    from types import SimpleNamespace

    with tracing.chat_span(
        job_uid="j", agent_id="a", role=None, stage=1, step=1, model="m", pool="p"
    ):
        for n, outcome in enumerate(["http_503", "ok"], start=1):
            tracing.record_attempt(
                SimpleNamespace(
                    number=n,
                    replica=f"r{n}",
                    outcome=outcome,
                    latency_seconds=0.1,
                    ttft_seconds=0.02 if outcome == "ok" else None,
                )
            )
    tracing.record_attempt(SimpleNamespace(number=9, outcome="ok"))  # no current span: ignored
    (span,) = memory.get_finished_spans()
    assert [e.attributes["kswarm.outcome"] for e in span.events] == ["http_503", "ok"]
    assert span.events[1].attributes["kswarm.ttft_seconds"] == 0.02
    assert span.attributes["kswarm.replica"] == "r2"
