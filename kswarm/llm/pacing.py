"""Pacing of model calls: how long to wait before a retry, and before any call at all.

Two clocks decide when the next request may leave. After a failure, :class:`RetryPolicy` gives an
exponential backoff with full jitter (so a hundred agents that hit the same 503 do not come back
in lock-step), stretched to the server's ``Retry-After`` when it sent one. Before every request,
a pool with ``requests_per_second`` passes through a :class:`RateLimiter`, a reservation-based
token bucket (GCRA) that needs no background task.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "DEFAULT_BACKOFF_COEFFICIENT",
    "DEFAULT_INITIAL_INTERVAL",
    "DEFAULT_MAXIMUM_INTERVAL",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY_AFTER_CAP",
    "DEFAULT_RETRY_POLICY",
    "RateLimiter",
    "RetryPolicy",
    "parse_retry_after",
]

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_INITIAL_INTERVAL = 1.0
DEFAULT_BACKOFF_COEFFICIENT = 2.0
DEFAULT_MAXIMUM_INTERVAL = 30.0
DEFAULT_RETRY_AFTER_CAP = 120.0
JITTER_KINDS = ("full", "none")

Clock = Callable[[], float]


class _RetrySpecLike(Protocol):
    max_attempts: int
    initial_interval_seconds: float
    backoff_coefficient: float
    maximum_interval_seconds: float


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts per call, the first included; 1 means never retry."""
    initial_interval: float = DEFAULT_INITIAL_INTERVAL
    """Backoff ceiling, in seconds, before the first retry."""
    backoff_coefficient: float = DEFAULT_BACKOFF_COEFFICIENT
    """Growth of the ceiling from one retry to the next."""
    maximum_interval: float = DEFAULT_MAXIMUM_INTERVAL
    """Cap on the backoff delay."""
    retry_after_cap: float = DEFAULT_RETRY_AFTER_CAP
    """Longest server ``Retry-After`` honoured; a longer one is cut to this."""
    jitter: str = "full"
    """``full``: wait a uniform random time between 0 and the ceiling; ``none``: the ceiling."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be >= 1, got {self.max_attempts}")
        if self.initial_interval < 0 or self.maximum_interval < 0:
            raise ValueError("initial_interval and maximum_interval: must be >= 0")
        if self.backoff_coefficient < 1:
            raise ValueError(f"backoff_coefficient: must be >= 1, got {self.backoff_coefficient}")
        if self.jitter not in JITTER_KINDS:
            raise ValueError(f"jitter: must be one of {', '.join(JITTER_KINDS)}")

    @classmethod
    def from_spec(cls, spec: _RetrySpecLike) -> RetryPolicy:
        """The policy a job's ``spec.retry`` (:class:`kswarm.spec.RetrySpec`) asks for."""
        return cls(
            max_attempts=spec.max_attempts,
            initial_interval=spec.initial_interval_seconds,
            backoff_coefficient=spec.backoff_coefficient,
            maximum_interval=spec.maximum_interval_seconds,
        )

    def ceiling(self, retry_number: int) -> float:
        """The backoff ceiling before retry ``retry_number`` (1 is the first retry)."""
        exponent = max(0, retry_number - 1)
        try:
            grown = self.initial_interval * self.backoff_coefficient**exponent
        except OverflowError:
            grown = self.maximum_interval
        return min(self.maximum_interval, grown)

    def delay(
        self,
        retry_number: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry ``retry_number``.

        The server's ``Retry-After`` is a floor: the delay is never shorter than what the replica
        asked for (up to ``retry_after_cap``), even when that exceeds ``maximum_interval``.
        """
        ceiling = self.ceiling(retry_number)
        wait = (rng or random).uniform(0.0, ceiling) if self.jitter == "full" else ceiling
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.retry_after_cap)
        return wait


DEFAULT_RETRY_POLICY = RetryPolicy()


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds (fractions accepted) or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class RateLimiter:
    """At most ``rate`` acquisitions per second on average, bursts of up to ``burst`` at once.

    Each :meth:`acquire` reserves the next free slot and sleeps until it comes, so waiters are
    served in order and nothing runs in the background. A cancelled waiter keeps its slot.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate: must be > 0, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._interval = 1.0 / rate
        self._tolerance = (self.burst - 1.0) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._theoretical_arrival = clock()

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait before using it."""
        now = self._clock()
        tat = max(self._theoretical_arrival, now)
        self._theoretical_arrival = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> float:
        """Wait for the next slot; the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)
        return wait
