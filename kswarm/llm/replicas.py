"""What the router knows about each replica: load, health, and the engine's own metrics.

A replica is in rotation until it proves unhealthy, by refusing connections, by failing
``/health`` ``health_failures_to_eject`` times in a row, or by ``eject_after_errors``
consecutive failed requests; then it is ejected for a cool-down that
doubles on each repeat, and comes back only when ``/health`` answers 200 after the cool-down.
Only failures that say something about the replica count: refused connections, timeouts, broken
transports and 5xx answers other than 503. A 429 or 503 is the engine asking for patience, which
backoff handles; a 4xx is the caller's fault.

Load is read from vLLM's Prometheus ``/metrics`` (``vllm:num_requests_running``,
``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``) and corrected by what this process
sent since the scrape, so a router that scrapes once a second still sees its own bursts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_ROUTER_SETTINGS",
    "HEALTH_FAILURES",
    "ReplicaMetrics",
    "ReplicaState",
    "RouterSettings",
    "parse_vllm_metrics",
]

HEALTH_FAILURES = frozenset({"connect_error", "transport_error", "timeout"})
"""Attempt outcomes that count against a replica's health (besides 5xx other than 503)."""

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_WANTED = frozenset((_RUNNING, _WAITING, *_KV_USAGE))
_WANTED_PREFIX = ("vllm:num_requests_", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    bound_factor: float = 1.25
    """``c`` of the bounded-load rule: a replica whose load reaches ``ceil(c * mean) + 1`` spills
    the request to the next replica in the prefix's order."""
    sticky_bound_factor: float = 1.5
    """``c`` of the bounded-load rule for a call with a replica hint (the replica that served
    the conversation's previous call): moving it loses the conversation's cached prefix, so
    it stays unless that replica is further above the mean than a new placement may be."""
    eject_after_errors: int = 3
    """Consecutive failed requests that eject a replica."""
    eject_cooldown_seconds: float = 10.0
    """First ejection's cool-down; each repeat without a success in between doubles it."""
    max_eject_cooldown_seconds: float = 320.0
    """Cap on the doubled cool-down."""
    health_interval_seconds: float = 5.0
    """How often every replica's ``/health`` is checked in the background."""
    health_failures_to_eject: int = 3
    """Consecutive failed ``/health`` probes (timeouts, error statuses) that eject a replica
    in rotation, as a Kubernetes probe's ``failureThreshold``: one slow probe from a busy worker
    says little. A refused connection ejects at once."""
    recovery_interval_seconds: float = 1.0
    """How often ejected replicas past their cool-down are probed."""
    metrics_interval_seconds: float = 1.0
    """How often ``/metrics`` is scraped (least-load and prefix-affinity)."""
    metrics_max_age_seconds: float = 10.0
    """Older scrapes are ignored; the router falls back to its own in-flight counts."""
    probe_timeout_seconds: float = 2.0
    """Timeout of one ``/health`` or ``/metrics`` request."""
    waiting_weight: float = 2.0
    """Least-load: extra load units per request waiting in the engine's queue."""
    kv_cache_weight: float = 32.0
    """Least-load: load units a completely full KV cache adds (scaled by its usage)."""


DEFAULT_ROUTER_SETTINGS = RouterSettings()


@dataclass(frozen=True, kw_only=True)
class ReplicaMetrics:
    running: float
    waiting: float
    kv_cache_usage: float
    """Fraction 0..1 of the KV cache in use."""
    scraped_at: float
    """Router clock reading at the scrape."""


def parse_vllm_metrics(text: str, *, scraped_at: float) -> ReplicaMetrics:
    """Read running, waiting and KV usage from a vLLM ``/metrics`` page (summed over models).

    Only the three gauges' sample lines are read (``name{labels} value [timestamp]`` in the
    Prometheus text format): a vLLM page is mostly histogram buckets, and parsing all of it
    with a general parser was the router's largest cost under load. A sample line that cannot
    be read raises ``ValueError``."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(_WANTED_PREFIX):
            continue
        brace = line.find("{")
        if brace >= 0:
            name, rest = line[:brace], line[line.rindex("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        if name not in _WANTED:
            continue
        fields = rest.split()
        if not fields:
            raise ValueError(f"no value in metrics line {line!r}")
        values[name] = values.get(name, 0.0) + float(fields[0])
    if _RUNNING not in values and _WAITING not in values:
        raise ValueError("no vllm:num_requests_running or vllm:num_requests_waiting samples")
    kv = next((values[name] for name in _KV_USAGE if name in values), 0.0)
    return ReplicaMetrics(
        running=values.get(_RUNNING, 0.0),
        waiting=values.get(_WAITING, 0.0),
        kv_cache_usage=min(1.0, max(0.0, kv)),
        scraped_at=scraped_at,
    )


def counts_against_health(outcome: str, http_status: int | None) -> bool:
    """Whether an attempt's outcome says the replica itself is unwell."""
    if outcome in HEALTH_FAILURES:
        return True
    return http_status is not None and http_status >= 500 and http_status != 503


@dataclass(eq=False, kw_only=True)
class ReplicaState:
    url: str
    """Base URL, as in the pool config."""
    in_flight: int = 0
    """Requests this process has sent and not yet seen answered."""
    dispatched: int = 0
    """Requests ever sent to it by this process."""
    consecutive_errors: int = 0
    failed_probes: int = 0
    """Consecutive failed ``/health`` probes."""
    ejections: int = 0
    """Ejections since the replica last answered a request well; drives the doubling."""
    ejected_until: float | None = None
    """Clock reading when the cool-down ends; ``None`` while in rotation."""
    metrics: ReplicaMetrics | None = None
    in_flight_at_scrape: int = 0
    serves_metrics: bool = True
    """``False`` once ``/metrics`` answered 404: the endpoint is not vLLM; stop scraping it."""

    @property
    def ejected(self) -> bool:
        return self.ejected_until is not None

    def eject(self, now: float, settings: RouterSettings) -> float:
        """Take the replica out of rotation; the cool-down chosen."""
        self.ejections += 1
        cooldown = min(
            settings.max_eject_cooldown_seconds,
            settings.eject_cooldown_seconds * 2.0 ** (self.ejections - 1),
        )
        self.ejected_until = now + cooldown
        self.consecutive_errors = self.failed_probes = 0
        return cooldown

    def restore(self) -> None:
        """Back in rotation (its ``/health`` answered 200 after the cool-down)."""
        self.ejected_until = None
        self.consecutive_errors = self.failed_probes = 0

    def record(
        self, outcome: str, http_status: int | None, now: float, settings: RouterSettings
    ) -> bool:
        """Count one finished attempt; whether it ejected the replica."""
        if outcome == "ok":
            self.consecutive_errors = 0
            self.ejections = 0
            return False
        if not counts_against_health(outcome, http_status):
            return False
        self.consecutive_errors += 1
        if not self.ejected and self.consecutive_errors >= settings.eject_after_errors:
            self.eject(now, settings)
            return True
        return False

    def observe(self, metrics: ReplicaMetrics) -> None:
        self.metrics = metrics
        self.in_flight_at_scrape = self.in_flight

    def load(self, now: float, settings: RouterSettings) -> float:
        """Requests on the replica: the engine's own count when fresh, else this process's."""
        m = self.metrics
        if m is None or now - m.scraped_at > settings.metrics_max_age_seconds:
            return float(self.in_flight)
        remote = m.running + m.waiting + (self.in_flight - self.in_flight_at_scrape)
        return max(float(self.in_flight), remote)

    def score(self, now: float, settings: RouterSettings) -> float:
        """Least-load score: load, plus penalties for queueing and a full KV cache."""
        m = self.metrics
        score = self.load(now, settings)
        if m is not None and now - m.scraped_at <= settings.metrics_max_age_seconds:
            score += settings.waiting_weight * m.waiting
            score += settings.kv_cache_weight * m.kv_cache_usage
        return score

    def snapshot(self) -> dict[str, Any]:
        """A plain view for logs, the dashboard and benchmarks."""
        m = self.metrics
        return {
            "url": self.url,
            "in_flight": self.in_flight,
            "dispatched": self.dispatched,
            "ejected": self.ejected,
            "consecutive_errors": self.consecutive_errors,
            "running": None if m is None else m.running,
            "waiting": None if m is None else m.waiting,
            "kv_cache_usage": None if m is None else m.kv_cache_usage,
        }


def bounded_load_limit(total_load: float, replicas: int, factor: float) -> float:
    """The bounded-load rule: a replica at or above this load spills new requests."""
    mean = total_load / max(1, replicas)
    return math.ceil(factor * mean) + 1
