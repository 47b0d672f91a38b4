"""Span records survive OTLP/HTTP (a real exporter into the loopback receiver) and JSON lines."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from kswarm.telemetry import spans as attr
from kswarm.telemetry.receiving import OtlpReceiver, decode_request
from kswarm.telemetry.spans import SpanRecord, read_jsonl, write_jsonl


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_spans_exported_over_otlp_http_arrive_whole_at_the_receiver(
    tmp_path: Path, compression: Compression
) -> None:
    with OtlpReceiver(jsonl=tmp_path / "spans.jsonl") as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "t"}))
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, compression=compression)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("invoke_workflow") as root:
            root.set_attribute(attr.JOB_UID, "j1")
            with tracer.start_as_current_span("chat m", attributes={attr.STEP: 3, "x": [1, 2]}):
                pass
        provider.shutdown()
        spans = receiver.wait_for(lambda s: len(s) == 2)
    chat, job = spans
    assert (chat.name, job.name) == ("chat m", "invoke_workflow")
    assert chat.trace_id == job.trace_id and len(job.trace_id) == 32
    assert chat.parent_id == job.span_id and job.parent_id is None
    assert chat.attributes == {attr.STEP: 3, "x": [1, 2]}
    assert job.resource["service.name"] == "t"
    assert job.start <= chat.start <= chat.end <= job.end
    assert list(read_jsonl(tmp_path / "spans.jsonl")) == spans
    assert receiver.spans_of_job("j1") == spans


def test_the_receiver_refuses_what_is_not_otlp_protobuf_on_v1_traces() -> None:
    with OtlpReceiver() as receiver:
        for path, ctype, body, status in [
            ("/v1/traces", "application/json", b"{}", 415),
            ("/v1/metrics", "application/x-protobuf", b"", 404),
            ("/v1/traces", "application/x-protobuf", b"\xff\xff", 400),
        ]:
            req = urllib.request.Request(
                receiver.endpoint + path, data=body, headers={"Content-Type": ctype}
            )
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=5)
            assert e.value.code == status
        assert receiver.spans == [] and receiver.requests == 0


def test_an_empty_request_decodes_to_no_spans_gzipped_or_not() -> None:
    assert decode_request(b"") == []
    assert decode_request(gzip.compress(b""), "gzip") == []


def test_records_round_trip_through_json_lines(tmp_path: Path) -> None:
    r = SpanRecord("a", None, "chat m", 1.5, 2.5, {attr.STEP: 1}, "t", "ok", {"service.name": "s"})
    assert write_jsonl([r, r], tmp_path / "s.jsonl") == 2
    assert list(read_jsonl(tmp_path / "s.jsonl")) == [r, r]
    assert r.operation == "chat" and r.seconds == 1.0 and r.get_int(attr.STEP) == 1
    assert SpanRecord("b", None, "invoke_agent x", 0, 0).operation == "invoke_agent"
