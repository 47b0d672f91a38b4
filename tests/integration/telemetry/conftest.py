"""Fixtures of the telemetry tests: tracing into a loopback receiver (Temporal: tests/conftest.py).

OpenTelemetry allows one tracer provider per process, so tracing is configured once for the
session, exporting over OTLP/HTTP to an :class:`OtlpReceiver` on loopback; each test picks its
job's spans out by the job's uid.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kswarm import telemetry
from kswarm.telemetry.receiving import OtlpReceiver


@pytest.fixture(scope="session")
def receiver() -> Iterator[OtlpReceiver]:
    """Tracing on for the session, into this receiver."""
    with OtlpReceiver() as r:
        provider = telemetry.configure_tracing(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": r.endpoint}, service_name="kswarm-tests"
        )
        if provider is None or not telemetry.enabled():
            raise RuntimeError("tracing did not turn on")
        yield r
