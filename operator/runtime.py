"""What every handler shares: the operator's configuration and its connections to Temporal,
the ledger and the Kubernetes API.

One :class:`Runtime` lives for the whole operator process; kopf hands it to each handler in
``memo.runtime``. Temporal and Kubernetes are connected at startup (the operator is useless
without them, so startup retries until they answer). The ledger only feeds counters into the
status, so it connects lazily and a missing database slows nothing down: the status then
carries what the workflow knows until the ledger is back.

The configuration is read once at start from the environment into :class:`OperatorConfig`;
everything a cluster admin may want to tune has a safe default there, so the handlers never
read ``os.environ`` themselves and a test can build a config directly::

    KSWARM_TEMPORAL_ADDRESS      Temporal frontend (see ``kswarm.config``)
    KSWARM_TEMPORAL_NAMESPACE    Temporal namespace
    KSWARM_DATABASE_URL          the ledger, read for the counters of the status
    KSWARM_WATCH_NAMESPACES      comma list of namespaces to serve; empty: the whole cluster
    KSWARM_STATIC_POOLS          pools the workers serve from their pools file (default "default");
                                 a job may name these without a ModelPool object
    KSWARM_STATIC_POOLS_FILE     pools file (kswarm.llm.pools) whose pools are copied as they are
                                 into the workers' document; default none
    KSWARM_POOLS_CONFIGMAP       ConfigMap the workers' pools document is written to (default
                                 "kswarm-pools", key pools.yaml); empty: write none
    KSWARM_POOL_KEYS_SECRET      Secret beside it that holds the API keys of pools with
                                 spec.apiKeySecret (default "kswarm-pool-keys")
    KSWARM_POOL_KEYS_DIR         where workers mount that Secret; the pools' apiKeyFile paths
                                 (default "/etc/kswarm/pool-keys", as deploy/worker.yaml)
    KSWARM_OPERATOR_NAMESPACE    namespace of that ConfigMap and Secret (default: the pod's own
                                 namespace, else "kswarm-system")
    KSWARM_POOLS_RESYNC          seconds between two rewrites of it without a ModelPool event
                                 (default 60)
    KSWARM_KNOWN_TOOLS           comma list of tools a job may name (default: the built-in tools)
    KSWARM_STATUS_INTERVAL       seconds between two status rebuilds of a running job (default 1)
    KSWARM_POOL_RETRY_SECONDS    seconds between two looks for a missing pool (default 5)
    KSWARM_CANCEL_TIMEOUT        seconds a deletion waits for the cancelled workflow (default 30)
    KSWARM_POOL_PROBE_INTERVAL   seconds between two probes of an endpoint pool (default 10)
    KSWARM_IMAGE                 image of simulator pools (default ghcr.io/kswarm/kswarm:0.1.0)
    KSWARM_PROMETHEUS_URL        Prometheus that KEDA asks for an autoscaled pool's queue
                                 (default http://prometheus-operated.monitoring.svc:9090)
    KSWARM_OPERATOR_HEALTH       liveness endpoint, e.g. http://0.0.0.0:8080/healthz (default off)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from kswarm.config import Settings
from kswarm.errors import ConfigError, LedgerError
from kswarm.ledger import JobCounters, Ledger
from kswarm.operator.autoscalers import DEFAULT_PROMETHEUS_URL
from kswarm.operator.kube import KubeApi
from kswarm.operator.pools_document import DEFAULT_KEYS_DIR
from kswarm.operator.workerpools import DEFAULT_CONFIGMAP, DEFAULT_KEYS_SECRET, PoolPublisher
from kswarm.sim import demo_tools
from kswarm.telemetry import temporal_plugins

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_OPERATOR_NAMESPACE",
    "LEDGER_RETRY_SECONDS",
    "Clock",
    "OperatorConfig",
    "Runtime",
    "runtime_of",
    "utc_now",
]

log = logging.getLogger(__name__)

LEDGER_RETRY_SECONDS = 5.0
"""After a failed connection, the ledger is not tried again for this long."""


# --------------------------------------------------------------------------- configuration


DEFAULT_IMAGE = "ghcr.io/kswarm/kswarm:0.1.0"
"""Image of the kswarm components and of simulator pools (a placeholder name)."""

DEFAULT_OPERATOR_NAMESPACE = "kswarm-system"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware; injected so tests can pin it."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _names(raw: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (raw or "").split(",") if n.strip())


def _own_namespace() -> str:
    """The pod's namespace (from its ServiceAccount mount), else ``kswarm-system``."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or DEFAULT_OPERATOR_NAMESPACE
    except OSError:
        return DEFAULT_OPERATOR_NAMESPACE


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


def _folder(env: Mapping[str, str], key: str, default: str) -> str:
    raw = env.get(key, "").strip().rstrip("/")
    if not raw:
        return default
    if not raw.startswith("/"):
        raise ConfigError(f"{key}: must be an absolute path, got {raw!r}")
    return raw


@dataclass(frozen=True, kw_only=True)
class OperatorConfig:
    settings: Settings = field(default_factory=Settings)
    """Temporal and ledger connection settings, shared with the worker."""
    watch_namespaces: tuple[str, ...] = ()
    """Namespaces the operator serves; empty means the whole cluster."""
    static_pools: frozenset[str] = frozenset({"default"})
    """Pool names served by the workers' pools file; no ModelPool object needed for them."""
    static_pools_file: str | None = None
    """Pools file whose entries are copied into the workers' document before the ModelPools."""
    pools_configmap: str | None = DEFAULT_CONFIGMAP
    """ConfigMap of the workers' pools document; ``None``: the operator writes none."""
    pool_keys_secret: str = DEFAULT_KEYS_SECRET
    """Secret of the pools' API keys, beside that ConfigMap (the workers mount both)."""
    pool_keys_dir: str = DEFAULT_KEYS_DIR
    """Where the workers mount that Secret: the folder of the pools' ``apiKeyFile``."""
    operator_namespace: str = DEFAULT_OPERATOR_NAMESPACE
    """Namespace of that ConfigMap and Secret: the operator's own."""
    pools_resync_seconds: float = 60.0
    """Seconds between two rewrites of the pools document without a ModelPool event."""
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
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    """The Prometheus a KEDA ScaledObject of an autoscaled pool reads the queue from."""
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
            static_pools_file=env.get("KSWARM_STATIC_POOLS_FILE", "").strip() or None,
            pools_configmap=env.get("KSWARM_POOLS_CONFIGMAP", DEFAULT_CONFIGMAP).strip() or None,
            pool_keys_secret=env.get("KSWARM_POOL_KEYS_SECRET", "").strip() or DEFAULT_KEYS_SECRET,
            pool_keys_dir=_folder(env, "KSWARM_POOL_KEYS_DIR", DEFAULT_KEYS_DIR),
            operator_namespace=env.get("KSWARM_OPERATOR_NAMESPACE", "").strip() or _own_namespace(),
            pools_resync_seconds=_seconds(env, "KSWARM_POOLS_RESYNC", 60.0),
            known_tools=tools or None,
            status_interval=_seconds(env, "KSWARM_STATUS_INTERVAL", 1.0),
            pool_retry_seconds=_seconds(env, "KSWARM_POOL_RETRY_SECONDS", 5.0),
            cancel_timeout=_seconds(env, "KSWARM_CANCEL_TIMEOUT", 30.0),
            pool_probe_interval=_seconds(env, "KSWARM_POOL_PROBE_INTERVAL", 10.0),
            image=env.get("KSWARM_IMAGE", "").strip() or DEFAULT_IMAGE,
            prometheus_url=env.get("KSWARM_PROMETHEUS_URL", "").strip() or DEFAULT_PROMETHEUS_URL,
            liveness_endpoint=env.get("KSWARM_OPERATOR_HEALTH", "").strip() or None,
        )


def _settings(env: Mapping[str, str]) -> Settings:
    return Settings(
        temporal_address=env.get("KSWARM_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
        temporal_namespace=env.get("KSWARM_TEMPORAL_NAMESPACE", "default"),
        database_url=env.get("KSWARM_DATABASE_URL") or None,
    )


# --------------------------------------------------------------------------- connections


@dataclass
class Runtime:
    config: OperatorConfig
    temporal: Client | None = None
    kube: KubeApi | None = None
    _ledger: Ledger | None = None
    _ledger_retry_at: float = 0.0
    known_tools: tuple[str, ...] = field(default_factory=tuple)
    publisher: PoolPublisher | None = None
    """Writes the workers' pools document; started with the operator unless turned off."""

    def __post_init__(self) -> None:
        if not self.known_tools:
            self.known_tools = self.config.known_tools or tuple(demo_tools().names())

    def now(self) -> datetime:
        return self.config.clock()

    @property
    def client(self) -> Client:
        if self.temporal is None:
            raise RuntimeError("the operator is not connected to Temporal yet")
        return self.temporal

    @property
    def api(self) -> KubeApi:
        if self.kube is None:
            raise RuntimeError("the operator has no Kubernetes API client yet")
        return self.kube

    async def connect(self) -> None:
        """Connect to Temporal and load the Kubernetes credentials (raises until they work)."""
        settings = self.config.settings
        if self.temporal is None:
            self.temporal = await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                plugins=temporal_plugins(metrics=False),
            )
            log.info(
                "connected to temporal address=%s namespace=%s",
                settings.temporal_address,
                settings.temporal_namespace,
            )
        if self.kube is None:
            self.kube = KubeApi.from_environment()

    def start_publisher(self) -> PoolPublisher | None:
        """Start writing the workers' pools document (once; ``None`` when turned off)."""
        config = self.config
        if self.publisher is None and config.pools_configmap:
            self.publisher = PoolPublisher(
                self.api,
                namespace=config.operator_namespace,
                name=config.pools_configmap,
                keys_secret=config.pool_keys_secret,
                keys_dir=config.pool_keys_dir,
                watch_namespaces=config.watch_namespaces,
                static_file=config.static_pools_file,
                resync_seconds=config.pools_resync_seconds,
            )
            self.publisher.start()
        return self.publisher

    async def ledger(self) -> Ledger | None:
        """The ledger, connecting on first use; ``None`` while it cannot be reached."""
        if self._ledger is not None:
            return self._ledger
        if time.monotonic() < self._ledger_retry_at:
            return None
        try:
            self._ledger = await Ledger.connect(self.config.settings.database_url)
        except LedgerError as e:
            self._ledger_retry_at = time.monotonic() + LEDGER_RETRY_SECONDS
            log.warning("ledger unavailable error=%r retry_in=%ss", str(e), LEDGER_RETRY_SECONDS)
            return None
        log.info("connected to ledger url=%s", self._ledger.masked_url)
        return self._ledger

    async def counters(self, uid: str) -> JobCounters | None:
        """The ledger's counters of a job; ``None`` while the ledger is away."""
        ledger = await self.ledger()
        if ledger is None:
            return None
        try:
            return await ledger.job_counters(uid)
        except LedgerError as e:
            log.warning("ledger read failed job_uid=%s error=%r", uid, str(e))
            return None

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
            self.publisher = None
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None
        if self.kube is not None:
            self.kube.close()
            self.kube = None
        self.temporal = None


def runtime_of(memo: Any) -> Runtime:
    """The runtime kopf carries in each handler's ``memo``."""
    rt = getattr(memo, "runtime", None)
    if not isinstance(rt, Runtime):
        raise RuntimeError("memo.runtime is not set: start the operator with kswarm.operator.main")
    return rt
