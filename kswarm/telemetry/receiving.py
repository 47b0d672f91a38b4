"""A minimal OTLP/HTTP trace receiver: spans on a laptop, in tests and in benchmarks.

A cluster has a collector (the OpenTelemetry Collector, Jaeger, Tempo); a laptop running
``kswarm run`` usually has none, and the tests must see the very bytes the exporter sends. This
receiver accepts ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in protobuf (gzip or
not), the OTLP/HTTP default, decodes it with ``opentelemetry-proto`` into
:class:`~kswarm.telemetry.spans.SpanRecord` values, keeps them in memory and optionally appends
them to a JSON-lines file that ``kswarm trace JOB --spans FILE`` reads::

    python -m kswarm.telemetry.receiving --port 4318 --out spans.jsonl &
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 kswarm run examples/quickstart.yaml
    kswarm trace quickstart --spans spans.jsonl

It answers OTLP/JSON with 415 (the SDK exporter never sends it). Not a collector: no
batching, no forwarding, no retention.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kswarm.telemetry import spans as spans_mod
from kswarm.telemetry.spans import SpanRecord

__all__ = ["OtlpReceiver", "main"]

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"


def decode_request(body: bytes, encoding: str = "") -> list[SpanRecord]:
    """Spans of one OTLP/HTTP protobuf request body."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    encoding = encoding.strip().lower()
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "deflate":
        body = zlib.decompress(body)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return spans_mod.from_otlp(request)


class OtlpReceiver:
    """Receive OTLP/HTTP spans on ``host:port`` (port 0: a free one) in a daemon thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, jsonl: str | Path | None = None
    ) -> None:
        self._lock = threading.Condition()
        self._spans: list[SpanRecord] = []
        self.requests = 0
        self.jsonl = Path(jsonl) if jsonl else None
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    def start(self) -> OtlpReceiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ reading

    @property
    def spans(self) -> list[SpanRecord]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def spans_of_job(self, job_uid: str) -> list[SpanRecord]:
        """Every span of the trace(s) that carry ``kswarm.job.uid == job_uid``."""
        spans = self.spans
        traces = {s.trace_id for s in spans if s.attributes.get(spans_mod.JOB_UID) == job_uid}
        return [s for s in spans if s.trace_id in traces]

    def wait_for(
        self, predicate: Callable[[list[SpanRecord]], bool], timeout: float = 10.0
    ) -> list[SpanRecord]:
        """Block until ``predicate(spans)`` holds; return the spans (raise on timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"OTLP receiver: condition not met after {timeout:g}s "
                        f"({len(self._spans)} spans in {self.requests} requests)"
                    )
                self._lock.wait(min(left, 0.2))
            return list(self._spans)

    # ------------------------------------------------------------------ serving

    def _received(self, records: list[SpanRecord]) -> None:
        if self.jsonl is not None:
            spans_mod.write_jsonl(records, self.jsonl)
        with self._lock:
            self._spans.extend(records)
            self.requests += 1
            self._lock.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.split("?", 1)[0] != TRACES_PATH:
                    return self._answer(404, b"only /v1/traces", "text/plain")
                ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()
                if ctype != "application/x-protobuf":
                    return self._answer(415, b"send application/x-protobuf", "text/plain")
                try:
                    records = decode_request(body, self.headers.get("Content-Encoding") or "")
                except Exception as e:  # a bad request is the sender's problem, not ours
                    return self._answer(400, str(e).encode(), "text/plain")
                receiver._received(records)
                # An empty ExportTraceServiceResponse is zero bytes of protobuf.
                self._answer(200, b"", "application/x-protobuf")

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("otlp receiver: " + format, *args)

        return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m kswarm.telemetry.receiving",
        description="Receive OTLP/HTTP spans and append them to a JSON-lines file.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=4318, help="port (default 4318, OTLP/HTTP's)")
    p.add_argument("--out", required=True, help="JSON-lines file the spans are appended to")
    ns = p.parse_args(argv)
    receiver = OtlpReceiver(ns.host, ns.port, jsonl=ns.out)
    print(f"receiving spans on {receiver.endpoint}{TRACES_PATH} -> {ns.out}", flush=True)
    try:
        receiver._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver._server.server_close()


if __name__ == "__main__":
    main()
