"""Backoff with full jitter, Retry-After as a floor, and the rate limiter."""

from __future__ import annotations

import random

import pytest

from kswarm.llm.pacing import RateLimiter, RetryPolicy, parse_retry_after
from kswarm.spec import RetrySpec


def test_backoff_ceiling_grows_by_the_coefficient_up_to_the_maximum() -> None:
    policy = RetryPolicy(initial_interval=1.0, backoff_coefficient=2.0, maximum_interval=5.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(initial_interval=1.0)
    rng = random.Random(1)
    delays = [policy.delay(3, rng=rng) for _ in range(500)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert max(delays) > 3.0 and min(delays) < 1.0


def test_retry_after_is_a_floor_even_beyond_the_maximum_interval() -> None:
    policy = RetryPolicy(initial_interval=0.01, maximum_interval=1.0, retry_after_cap=30.0)
    assert policy.delay(1, retry_after=2.0) == 2.0
    assert policy.delay(1, retry_after=600.0) == 30.0
    assert RetryPolicy(jitter="none", initial_interval=3.0).delay(1, retry_after=1.0) == 3.0


def test_is_built_from_a_jobs_retry_spec() -> None:
    spec = RetrySpec(max_attempts=3, initial_interval_seconds=0.5, maximum_interval_seconds=4)
    policy = RetryPolicy.from_spec(spec)
    assert (policy.max_attempts, policy.initial_interval, policy.maximum_interval) == (3, 0.5, 4)


def test_refuses_a_policy_that_never_attempts() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("3", 3.0, id="seconds"),
        pytest.param("0.25", 0.25, id="fraction"),
        pytest.param("Wed, 21 Oct 2015 07:28:10 GMT", 10.0, id="http-date"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_parses_retry_after_headers(header: str | None, seconds: float | None) -> None:
    now = 1445412480.0  # 07:28:00 that day
    assert parse_retry_after(header, now=now) == seconds


def test_rate_limiter_spaces_requests_after_the_burst() -> None:
    now = [100.0]
    limiter = RateLimiter(10.0, burst=2, clock=lambda: now[0])
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    now[0] += 10.0
    assert limiter.reserve() == 0.0
