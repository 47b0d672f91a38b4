"""Span records: the one shape every consumer of a job's trace reads.

A job's spans reach kswarm from three places: an OTLP/HTTP request (the receiver in
:mod:`kswarm.telemetry.receiving`), the SDK's in-process spans (tests), and the ledger, which
can rebuild the same spans without any collector (:mod:`kswarm.telemetry.ledger_spans`). The
critical-path algorithm, ``kswarm trace`` and the dashboard should not care which; they take
:class:`SpanRecord` values, built here, with the attribute names spelled once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_ID",
    "AGENT_NAME",
    "AGENT_ROLE",
    "INPUT_TOKENS",
    "JOB_NAME",
    "JOB_UID",
    "OPERATION",
    "OUTPUT_TOKENS",
    "POOL",
    "PROVIDER",
    "REQUEST_MODEL",
    "STAGE",
    "STEP",
    "TOOL_CALL_ID",
    "TOOL_NAME",
    "SpanRecord",
    "from_otlp",
    "from_readable",
    "read_jsonl",
    "write_jsonl",
]

# OpenTelemetry GenAI semantic conventions.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
AGENT_NAME = "gen_ai.agent.name"
GENAI_AGENT_ID = "gen_ai.agent.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"
# kswarm's own.
JOB_UID = "kswarm.job.uid"
JOB_NAME = "kswarm.job.name"
JOB_NAMESPACE = "kswarm.job.namespace"
JOB_MODE = "kswarm.job.mode"
AGENT_ID = "kswarm.agent.id"
AGENT_ROLE = "kswarm.agent.role"
STAGE = "kswarm.stage"
STEP = "kswarm.step"
POOL = "kswarm.pool"
TOOL_INDEX = "kswarm.tool.index"


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span, as plain values: ids in hex, times in epoch seconds."""

    span_id: str
    parent_id: str | None
    name: str
    start: float
    end: float
    attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_id: str = ""
    status: str = "unset"
    """``ok``, ``error`` or ``unset`` (OpenTelemetry's status codes)."""
    resource: Mapping[str, Any] = field(default_factory=dict)
    """Attributes of the process that made the span (``service.name``, ``process.pid``)."""

    @property
    def operation(self) -> str:
        """The GenAI operation (``chat``, ``execute_tool``, ...), else the name's first word."""
        op = self.attributes.get(OPERATION)
        return str(op) if op else self.name.split(" ", 1)[0]

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def get_int(self, key: str) -> int | None:
        value = self.attributes.get(key)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def get_str(self, key: str) -> str | None:
        value = self.attributes.get(key)
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "attributes": dict(self.attributes),
            "resource": dict(self.resource),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpanRecord:
        return cls(
            span_id=str(d["span_id"]),
            parent_id=d.get("parent_id") or None,
            name=str(d["name"]),
            start=float(d["start"]),
            end=float(d["end"]),
            attributes=dict(d.get("attributes") or {}),
            trace_id=str(d.get("trace_id") or ""),
            status=str(d.get("status") or "unset"),
            resource=dict(d.get("resource") or {}),
        )


# ---------------------------------------------------------------------- OTLP protobuf

_STATUS = {0: "unset", 1: "ok", 2: "error"}


def _any_value(v: Any) -> Any:
    """Decode an ``opentelemetry.proto.common.v1.AnyValue``."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    return getattr(v, kind)


def _attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def from_otlp(request: Any) -> list[SpanRecord]:
    """The spans of an ``ExportTraceServiceRequest`` (``opentelemetry.proto``)."""
    out: list[SpanRecord] = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                parent = bytes(s.parent_span_id).hex()
                out.append(
                    SpanRecord(
                        span_id=bytes(s.span_id).hex(),
                        parent_id=parent or None,
                        name=s.name,
                        start=s.start_time_unix_nano / 1e9,
                        end=s.end_time_unix_nano / 1e9,
                        attributes=_attributes(s.attributes),
                        trace_id=bytes(s.trace_id).hex(),
                        status=_STATUS.get(int(s.status.code), "unset"),
                        resource=resource,
                    )
                )
    return out


def from_readable(span: Any) -> SpanRecord:
    """A record of an SDK ``ReadableSpan`` (what in-process exporters receive)."""
    ctx = span.get_span_context()
    parent = span.parent
    return SpanRecord(
        span_id=f"{ctx.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else None,
        name=span.name,
        start=(span.start_time or 0) / 1e9,
        end=(span.end_time or span.start_time or 0) / 1e9,
        attributes=dict(span.attributes or {}),
        trace_id=f"{ctx.trace_id:032x}",
        status=span.status.status_code.name.lower(),
        resource=dict(span.resource.attributes) if span.resource else {},
    )


# ---------------------------------------------------------------------- files


def write_jsonl(records: Iterable[SpanRecord], path: str | Path) -> int:
    """Append records to a JSON-lines file; return how many."""
    n = 0
    with Path(path).open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), separators=(",", ":"), default=str) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[SpanRecord]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield SpanRecord.from_dict(json.loads(line))
