"""Traces of swarm jobs: OpenTelemetry from the standard ``OTEL_*`` variables, and the spans.

An operator wants one trace per job, from the orchestrator's first model call to the last
sub-agent's last tool call, in whatever collector the cluster runs. This module does the two
things that takes:

* :func:`configure_tracing` sets up the process's tracer provider from the environment, the
  way every OpenTelemetry SDK does: tracing is off unless ``OTEL_EXPORTER_OTLP_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER`` is set, and spans go out
  over OTLP/HTTP (``http/protobuf``). The provider is Temporal's replay-safe one, so spans made
  in workflow code get deterministic ids and are not exported again when a workflow replays.
* The span helpers (:func:`job_span`, :func:`agent_span`, :func:`chat_span`,
  :func:`tool_span`) name and attribute spans by OpenTelemetry's GenAI conventions
  (``invoke_workflow``, ``invoke_agent {name}``, ``chat {model}``, ``execute_tool {tool}``)
  plus kswarm's own attributes (job uid, agent id, stage, step). They are context managers:
  the job and agent spans for workflow code (replay-safe), the chat and tool spans for
  activities, where the time is spent. When tracing is off they yield OpenTelemetry's
  non-recording span after one check of a module global: no span, no allocation, no export.

Context crosses Temporal (client -> workflow -> child workflow -> activity, across processes)
through :mod:`kswarm.telemetry.interceptors`, whose ``temporal_plugins()`` gives the client its
plugin.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer

from kswarm.errors import ConfigError
from kswarm.telemetry import spans as attr

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

__all__ = [
    "agent_span",
    "chat_span",
    "configure_tracing",
    "enabled",
    "force_flush",
    "job_span",
    "provider_for",
    "record_attempt",
    "set_error",
    "set_usage",
    "shutdown_tracing",
    "tool_span",
    "tracing_requested",
    "use_tracer_provider",
]

log = logging.getLogger(__name__)

INSTRUMENTATION = "kswarm"
DEFAULT_SERVICE_NAME = "kswarm"
TRACES_PATH = "/v1/traces"

_tracer: Tracer | None = None
"""Replay-safe: for spans made in workflow code (the job's and the agents')."""
_activity_tracer: Tracer | None = None
"""The SDK's own tracer, without the replay-safe wrapper: for spans made in activities."""
_provider: ReplaySafeTracerProvider | None = None


def enabled() -> bool:
    """Whether spans are being made in this process."""
    return _tracer is not None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Make the span helpers use ``provider`` (``None``: off). :func:`configure_tracing` calls
    this; tests call it with a provider of their own."""
    global _tracer, _activity_tracer
    if provider is None:
        _tracer = _activity_tracer = None
        return
    _tracer = provider.get_tracer(INSTRUMENTATION)
    _activity_tracer = getattr(provider, "sdk_provider", provider).get_tracer(INSTRUMENTATION)


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """True when the ``OTEL_*`` variables ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters == "none":
        return False
    return bool(
        exporters
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _traces_endpoint(env: Mapping[str, str]) -> str:
    """The URL spans are posted to, as the OTLP exporter specification resolves it."""
    signal = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if signal:
        return signal
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
    return base.rstrip("/") + TRACES_PATH


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    out: list[SpanExporter] = []
    for name in filter(None, names):
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            if protocol != "http/protobuf":
                raise ConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL: kswarm exports OTLP over HTTP "
                    f"('http/protobuf', port 4318), not {protocol!r}"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = _traces_endpoint(env)
            if urlsplit(endpoint).scheme not in ("http", "https"):
                raise ConfigError(f"OTEL_EXPORTER_OTLP_ENDPOINT: not an http(s) URL: {endpoint!r}")
            out.append(OTLPSpanExporter(endpoint=endpoint))
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        else:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}; use otlp, console or none"
            )
    return out


def _replay_safe_provider(resource: Any) -> ReplaySafeTracerProvider:
    """Temporal's replay-safe provider (deterministic ids in workflows, no export on replay)
    that hands out each tracer once: Temporal's interceptor asks for its tracer on every
    activity, and the SDK would build a new one each time (a quarter of tracing's CPU time)."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider, create_tracer_provider

    class CachingReplaySafeTracerProvider(ReplaySafeTracerProvider):
        _tracers: dict[tuple[str, str | None, str | None], Tracer]
        sdk_provider: SdkTracerProvider

        def get_tracer(
            self,
            instrumenting_module_name: str,
            instrumenting_library_version: str | None = None,
            schema_url: str | None = None,
            attributes: Any = None,
        ) -> Tracer:
            if attributes:
                return super().get_tracer(
                    instrumenting_module_name, instrumenting_library_version, schema_url, attributes
                )
            key = (instrumenting_module_name, instrumenting_library_version, schema_url)
            tracer = self._tracers.get(key)
            if tracer is None:
                tracer = self._tracers[key] = super().get_tracer(*key)
            return tracer

    # Temporal's own factory, for its id generator (public API); its provider is not kept.
    generator = create_tracer_provider(shutdown_on_exit=False).id_generator()
    sdk = SdkTracerProvider(resource=resource, id_generator=generator)
    provider = CachingReplaySafeTracerProvider(sdk, generator)
    provider._tracers = {}
    provider.sdk_provider = sdk
    return provider


def configure_tracing(
    env: Mapping[str, str] | None = None,
    *,
    exporter: SpanExporter | None = None,
    service_name: str = DEFAULT_SERVICE_NAME,
) -> ReplaySafeTracerProvider | None:
    """Set up this process's tracing from ``env`` (default: ``os.environ``).

    Returns the tracer provider, now global, or ``None`` when tracing is off. ``exporter``
    replaces the exporters the environment names (tests, benchmarks). A second call returns
    the provider of the first: OpenTelemetry allows one global provider per process. Raises
    :class:`ConfigError` naming the variable when the environment asks for what kswarm
    cannot do.
    """
    global _provider
    if _provider is not None:
        return _provider
    env = os.environ if env is None else env
    if exporter is None and not tracing_requested(env):
        use_tracer_provider(None)
        return None
    exporters = [exporter] if exporter is not None else _exporters(env)

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults: dict[str, str | int] = {"process.pid": os.getpid()}
    if not env.get("OTEL_SERVICE_NAME"):
        defaults[SERVICE_NAME] = service_name
    provider = _replay_safe_provider(Resource.create(defaults))
    for e in exporters:
        provider.add_span_processor(BatchSpanProcessor(e))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        raise ConfigError(
            "OpenTelemetry: another tracer provider is already set in this process; "
            "call kswarm.telemetry.configure_tracing() before anything else sets one"
        )
    _provider = provider
    use_tracer_provider(provider)
    log.info("tracing on: %d exporter(s)", len(exporters))
    return provider


def force_flush(timeout_seconds: float = 10.0) -> bool:
    """Export every finished span now (before a process exits, or in tests)."""
    if _provider is None:
        return True
    return _provider.force_flush(int(timeout_seconds * 1000))


def shutdown_tracing() -> None:
    """Export what is left and stop making spans (the process's provider stays set: OpenTelemetry
    cannot take it back)."""
    if _provider is not None:
        _provider.shutdown()
    use_tracer_provider(None)


def provider_for(replicas: tuple[str, ...] | list[str]) -> str:
    """``gen_ai.provider.name`` of a pool: ``openai`` for OpenAI's API, else ``vllm`` (kswarm's
    pools are vLLM servers or the simulator, which speaks vLLM's API)."""
    for url in replicas:
        host = urlsplit(url).hostname or ""
        if host == "openai.com" or host.endswith(".openai.com"):
            return "openai"
    return "vllm"


# ---------------------------------------------------------------------- spans


_OFF: contextlib.nullcontext[Span] = contextlib.nullcontext(INVALID_SPAN)
"""What every helper returns when tracing is off: one shared, reusable no-op."""


@contextlib.contextmanager
def _span(
    tracer: Tracer, name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL
) -> Iterator[Span]:
    values = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, kind=kind, attributes=values) as span:
        try:
            yield span
        except BaseException as e:
            span.set_attribute(attr.ERROR_TYPE, type(e).__name__)
            raise


def job_span(
    *, job_uid: str, name: str, namespace: str, mode: str
) -> contextlib.AbstractContextManager[Span]:
    """``invoke_workflow``: the whole job."""
    if _tracer is None:
        return _OFF
    return _span(
        _tracer,
        "invoke_workflow",
        {
            attr.OPERATION: "invoke_workflow",
            attr.JOB_UID: job_uid,
            attr.JOB_NAME: name,
            attr.JOB_NAMESPACE: namespace,
            attr.JOB_MODE: mode,
        },
    )


def agent_span(
    *, job_uid: str, agent_id: str, name: str, role: str, stage: int | None
) -> contextlib.AbstractContextManager[Span]:
    """``invoke_agent {name}``: one agent (orchestrator, single agent, or sub-agent)."""
    if _tracer is None:
        return _OFF
    return _span(
        _tracer,
        f"invoke_agent {name}",
        {
            attr.OPERATION: "invoke_agent",
            attr.AGENT_NAME: name,
            attr.GENAI_AGENT_ID: agent_id,
            attr.JOB_UID: job_uid,
            attr.AGENT_ID: agent_id,
            attr.AGENT_ROLE: role,
            attr.STAGE: stage,
        },
    )


def chat_span(
    *,
    job_uid: str,
    agent_id: str,
    role: str | None,
    stage: int | None,
    step: int,
    model: str,
    pool: str,
    provider: str = "vllm",
) -> contextlib.AbstractContextManager[Span]:
    """``chat {model}``: one model step of one agent (its retries included). In activities only:
    this span is not replay-safe (workflow code uses :func:`job_span` and :func:`agent_span`)."""
    if _activity_tracer is None:
        return _OFF
    return _span(
        _activity_tracer,
        f"chat {model}",
        {
            attr.OPERATION: "chat",
            attr.PROVIDER: provider,
            attr.REQUEST_MODEL: model,
            attr.JOB_UID: job_uid,
            attr.AGENT_ID: agent_id,
            attr.AGENT_ROLE: role,
            attr.STAGE: stage,
            attr.STEP: step,
            attr.POOL: pool,
        },
        SpanKind.CLIENT,
    )


def tool_span(
    *, job_uid: str, agent_id: str, step: int, index: int, tool: str, call_id: str
) -> contextlib.AbstractContextManager[Span]:
    """``execute_tool {tool}``: one tool call, keyed as the ledger keys it (in activities only)."""
    if _activity_tracer is None:
        return _OFF
    return _span(
        _activity_tracer,
        f"execute_tool {tool}",
        {
            attr.OPERATION: "execute_tool",
            attr.TOOL_NAME: tool,
            attr.TOOL_CALL_ID: call_id,
            attr.JOB_UID: job_uid,
            attr.AGENT_ID: agent_id,
            attr.STEP: step,
            attr.TOOL_INDEX: index,
        },
    )


def set_usage(span: Span, input_tokens: int, output_tokens: int) -> None:
    """Record a chat's token usage on its span (nothing when the span does not record)."""
    if span.is_recording():
        span.set_attribute(attr.INPUT_TOKENS, int(input_tokens))
        span.set_attribute(attr.OUTPUT_TOKENS, int(output_tokens))


def set_error(span: Span, error_type: str, description: str = "") -> None:
    """Mark a span failed without an exception (a tool that answered with an error)."""
    if span.is_recording():
        span.set_attribute(attr.ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, description or error_type))


def record_attempt(attempt: Any) -> None:
    """Add one model-call attempt (``kswarm.llm.chats.Attempt``) as an event of the current
    span: inside a ``model_step`` activity that is its ``chat`` span. Retries, replicas and
    time to first token then show in the trace; nothing happens when tracing is off."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    values = {
        "kswarm.attempt": getattr(attempt, "number", 0),
        "kswarm.replica": getattr(attempt, "replica", None) or "",
        "kswarm.outcome": getattr(attempt, "outcome", ""),
        "kswarm.latency_seconds": float(getattr(attempt, "latency_seconds", 0.0) or 0.0),
    }
    ttft = getattr(attempt, "ttft_seconds", None)
    if ttft is not None:
        values["kswarm.ttft_seconds"] = float(ttft)
    span.add_event("gen_ai.attempt", values)
    if values["kswarm.outcome"] == "ok":
        span.set_attribute("kswarm.replica", values["kswarm.replica"])
