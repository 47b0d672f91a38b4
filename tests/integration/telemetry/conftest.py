"""Fixtures of the telemetry tests: the Temporal dev server, and tracing into a loopback receiver.

OpenTelemetry allows one tracer provider per process, so tracing is configured once for the
session, exporting over OTLP/HTTP to an :class:`OtlpReceiver` on loopback; each test picks its
job's spans out by the job's uid.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kswarm import telemetry
from kswarm.devserver import DevServer, start_dev_server
from kswarm.telemetry.receiving import OtlpReceiver


@pytest.fixture(scope="session")
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    async with start_dev_server(tmp_path_factory.mktemp("temporal")) as server:
        yield server


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
