"""The operator's configuration, read once from the environment at start.

Everything a cluster admin may want to tune lives here with a safe default, so the handlers
never read ``os.environ`` themselves and the tests can build a config directly::

    KSWARM_TEMPORAL_ADDRESS      Temporal frontend (see ``kswarm.config``)
    KSWARM_TEMPORAL_NAMESPACE    Temporal namespace
    KSWARM_DATABASE_URL          the ledger, read for the counters of the status
    KSWARM_WATCH_NAMESPACES      comma list of namespaces to serve; empty: the whole cluster
    KSWARM_STATIC_POOLS          pools the workers serve from their pools file (default "default");
                                 a job may name these without a ModelPool object
    KSWARM_KNOWN_TOOLS           comma list of tools a job may name (default: the built-in tools)
    KSWARM_STATUS_INTERVAL       seconds between two status rebuilds of a running job (default 1)
    KSWARM_POOL_RETRY_SECONDS    seconds between two looks for a missing pool (default 5)
    KSWARM_CANCEL_TIMEOUT        seconds a deletion waits for the cancelled workflow (default 30)
    KSWARM_POOL_PROBE_INTERVAL   seconds between two probes of an endpoint pool (default 10)
    KSWARM_IMAGE                 image of simulator pools (default ghcr.io/kswarm/kswarm:0.1.0)
    KSWARM_OPERATOR_HEALTH       liveness endpoint, e.g. http://0.0.0.0:8080/healthz (default off)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kswarm.config import Settings
from kswarm.errors import ConfigError

__all__ = ["DEFAULT_IMAGE", "Clock", "OperatorConfig", "utc_now"]

DEFAULT_IMAGE = "ghcr.io/kswarm/kswarm:0.1.0"
"""Image of the kswarm components and of simulator pools (a placeholder name)."""

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware; injected so tests can pin it."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (raw or "").split(",") if n.strip())


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}: must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {raw!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    settings: Settings = field(default_factory=Settings)
    """Temporal and ledger connection settings, shared with the worker."""
    watch_namespaces: tuple[str, ...] = ()
    """Namespaces the operator serves; empty means the whole cluster."""
    static_pools: frozenset[str] = frozenset({"default"})
    """Pool names served by the workers' pools file; no ModelPool object needed for them."""
    known_tools: tuple[str, ...] | None = None
    """Tools a job may name; ``None`` means the tools built into kswarm."""
    status_interval: float = 1.0
    """Seconds between two status rebuilds of a running job."""
    pool_retry_seconds: float = 5.0
    """Seconds between two looks for a pool a job names but that does not exist yet."""
    cancel_timeout: float = 30.0
    """Seconds a deletion waits for the cancelled workflow to close before letting go."""
    pool_probe_interval: float = 10.0
    """Seconds between two probes of an endpoint pool."""
    image: str = DEFAULT_IMAGE
    """Image that runs ``kswarm sim`` for simulator pools."""
    liveness_endpoint: str | None = None
    """kopf's liveness endpoint, e.g. ``http://0.0.0.0:8080/healthz``; ``None``: off."""
    clock: Clock = utc_now
    """Source of the current time for conditions and events."""

    @property
    def clusterwide(self) -> bool:
        return not self.watch_namespaces

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        tools = _names(env.get("KSWARM_KNOWN_TOOLS"))
        return cls(
            settings=Settings.from_env() if env is os.environ else _settings(env),
            watch_namespaces=_names(env.get("KSWARM_WATCH_NAMESPACES")),
            static_pools=frozenset(_names(env.get("KSWARM_STATIC_POOLS", "default"))),
            known_tools=tools or None,
            status_interval=_seconds(env, "KSWARM_STATUS_INTERVAL", 1.0),
            pool_retry_seconds=_seconds(env, "KSWARM_POOL_RETRY_SECONDS", 5.0),
            cancel_timeout=_seconds(env, "KSWARM_CANCEL_TIMEOUT", 30.0),
            pool_probe_interval=_seconds(env, "KSWARM_POOL_PROBE_INTERVAL", 10.0),
            image=env.get("KSWARM_IMAGE", "").strip() or DEFAULT_IMAGE,
            liveness_endpoint=env.get("KSWARM_OPERATOR_HEALTH", "").strip() or None,
        )


def _settings(env: Mapping[str, str]) -> Settings:
    return Settings(
        temporal_address=env.get("KSWARM_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        temporal_namespace=env.get("KSWARM_TEMPORAL_NAMESPACE", "default"),
        database_url=env.get("KSWARM_DATABASE_URL") or None,
    )
