"""Telemetry of swarm jobs: traces (OpenTelemetry, GenAI conventions), critical paths, metrics.

configure_tracing()                  once per process, from the OTEL_* variables
temporal_plugins(pools=...)          for Client.connect(plugins=...): spans and metrics
critical_path.critical_path(spans)   the job's critical path in steps and seconds
format_path(path)                    ... as text (kswarm trace)
kswarm.telemetry.metrics             Prometheus metrics and start_metrics_server()
"""

from __future__ import annotations

from typing import Any

from kswarm.telemetry.critical_path import CriticalPath, format_path
from kswarm.telemetry.spans import SpanRecord
from kswarm.telemetry.tracing import configure_tracing, enabled, force_flush

__all__ = [
    "CriticalPath",
    "SpanRecord",
    "configure_tracing",
    "enabled",
    "force_flush",
    "format_path",
    "temporal_plugins",
]


def temporal_plugins(*, pools: Any = None, metrics: bool = True) -> list[Any]:
    """See :func:`kswarm.telemetry.interceptors.temporal_plugins` (imported on first use: the
    dashboard needs the critical path, not Temporal)."""
    from kswarm.telemetry import interceptors

    return list(interceptors.temporal_plugins(pools=pools, metrics=metrics))
