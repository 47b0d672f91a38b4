"""Replica choice without a network: stickiness, bounded load, round-robin, ejection counting.

These drive :class:`Router` through ``acquire``/``release`` with no HTTP client, so no probes or
scrapes run; the policies that read ``/metrics`` and the ``/health`` recovery are covered against
real simulator replicas in ``tests/integration/llm/test_llm_router_live.py``.
"""

from __future__ import annotations

import asyncio
import collections

import pytest

from kswarm.llm.errors import ReplicaUnavailable
from kswarm.llm.pools import PoolConfig
from kswarm.llm.replicas import ReplicaMetrics, RouterSettings
from kswarm.llm.router import Router, rendezvous_order

URLS = tuple(f"http://10.0.0.{i}:8000" for i in range(1, 5))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def router(policy: str, *, max_concurrency: int = 64, clock: Clock | None = None) -> Router:
    pool = PoolConfig(
        name="p", model="m", replicas=URLS, router=policy, max_concurrency=max_concurrency
    )
    return Router(pool, clock=clock or Clock())


async def test_prefix_affinity_sends_one_key_to_one_replica() -> None:
    r = router("prefix-affinity")
    chosen = set()
    for _ in range(20):
        url = await r.acquire("job-1")
        r.release(url, "ok")
        chosen.add(url)
    assert len(chosen) == 1


async def test_prefix_affinity_spreads_different_keys() -> None:
    r = router("prefix-affinity")
    chosen = set()
    for i in range(40):
        url = await r.acquire(f"job-{i}")
        r.release(url, "ok")
        chosen.add(url)
    assert len(chosen) == len(URLS)


async def test_prefix_affinity_spills_under_load_within_the_bound() -> None:
    r = router("prefix-affinity")
    held = collections.Counter([await r.acquire("hot-job") for _ in range(100)])
    mean = 100 / len(URLS)
    assert len(held) == len(URLS), "a hot key spills to the other replicas"
    assert max(held.values()) <= (1.25 * mean) + 2
    first_choice = rendezvous_order("hot-job", r.replicas)[0].url
    assert held[first_choice] == max(held.values())


async def test_prefix_affinity_keeps_a_key_home_while_the_others_are_busier() -> None:
    r = router("prefix-affinity")
    home = await r.acquire("job-a")
    r.release(home, "ok")
    for _ in range(30):  # other traffic, spread by many keys
        await r.acquire(f"other-{_}")
    assert await r.acquire("job-a") == home


async def test_round_robin_cycles_through_the_replicas() -> None:
    r = router("round-robin")
    picks = []
    for _ in range(8):
        url = await r.acquire(None)
        r.release(url, "ok")
        picks.append(url)
    assert picks == list(URLS) * 2


async def test_least_load_follows_scraped_metrics() -> None:
    clock = Clock()
    r = router("least-load", clock=clock)
    for i, replica in enumerate(r.replicas):
        busy = 0.0 if i == 2 else 20.0
        replica.observe(
            ReplicaMetrics(running=busy, waiting=busy / 2, kv_cache_usage=0.1, scraped_at=clock())
        )
    picks = collections.Counter()
    for _ in range(10):
        picks[await r.acquire(None)] += 1  # held: local in-flight counts add up
    assert picks == {URLS[2]: 10}


async def test_least_load_ignores_stale_metrics() -> None:
    clock = Clock()
    r = router("least-load", clock=clock)
    r.replicas[0].observe(ReplicaMetrics(running=99, waiting=99, kv_cache_usage=1, scraped_at=0))
    picks = {await r.acquire(None) for _ in range(4)}
    assert picks == set(URLS)


async def test_never_exceeds_max_concurrency_and_waits_for_a_slot() -> None:
    r = router("round-robin", max_concurrency=1)
    held = [await r.acquire(None) for _ in URLS]
    waiter = asyncio.ensure_future(r.acquire(None))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    r.release(held[1], "ok")
    assert await asyncio.wait_for(waiter, 1) == held[1]


async def test_avoids_a_replica_that_failed_this_call_when_another_is_open() -> None:
    r = router("prefix-affinity")
    home = await r.acquire("job")
    r.release(home, "connect_error")
    assert await r.acquire("job", avoid={home}) != home


async def test_ejects_after_consecutive_errors_with_a_doubling_cooldown() -> None:
    clock = Clock()
    r = router("round-robin", clock=clock)
    target = r.replicas[0]
    for outcome in ("connect_error", "http_500", "timeout"):
        target.in_flight += 1
        r.release(target.url, outcome, 500 if outcome == "http_500" else None)
    assert target.ejected and target.ejected_until == clock.now + 10.0
    assert target.url not in [await r.acquire(None) for _ in range(8)]
    target.restore()
    for _ in range(3):
        target.in_flight += 1
        r.release(target.url, "connect_error")
    assert target.ejected_until == clock.now + 20.0


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        pytest.param("http_503", 503, id="503"),
        pytest.param("http_429", 429, id="429"),
        pytest.param("bad_request", 400, id="400"),
        pytest.param("malformed_response", None, id="malformed"),
    ],
)
async def test_load_signals_and_client_errors_do_not_eject(outcome: str, status: int) -> None:
    r = router("round-robin")
    target = r.replicas[0]
    for _ in range(10):
        target.in_flight += 1
        r.release(target.url, outcome, status)
    assert not target.ejected


async def test_a_success_resets_the_error_count() -> None:
    r = Router(
        PoolConfig(name="p", model="m", replicas=URLS, router="round-robin"),
        settings=RouterSettings(eject_after_errors=2),
    )
    target = r.replicas[0]
    for outcome in ("timeout", "ok", "timeout", "ok", "timeout"):
        target.in_flight += 1
        r.release(target.url, outcome)
    assert not target.ejected


async def test_all_replicas_ejected_raises_replica_unavailable() -> None:
    r = router("round-robin")
    for replica in r.replicas:
        replica.eject(0.0, r.settings)
    with pytest.raises(ReplicaUnavailable, match="all 4 replicas"):
        await r.acquire(None)


async def test_a_group_key_spreads_a_group_over_two_replicas_and_keeps_each_member_home() -> None:
    r = router("prefix-affinity")
    homes: dict[str, set[str]] = collections.defaultdict(set)
    for _ in range(3):
        for agent in range(20):
            url = await r.acquire(f"job-1/agent-{agent}")
            r.release(url, "ok")
            homes[f"agent-{agent}"].add(url)
    assert all(len(urls) == 1 for urls in homes.values()), "each agent sticks to one replica"
    used = set().union(*homes.values())
    assert len(used) == 2
    assert used == {s.url for s in rendezvous_order("job-1", r.replicas)[:2]}


async def test_a_replica_hint_keeps_a_spilled_conversation_where_its_prefix_is_cached() -> None:
    """A member spilled off its hashed home by the bounded-load rule has its conversation cached
    on the spill replica: with the hint its next call goes back there, not to the hashed home."""
    r = router("prefix-affinity")
    home = rendezvous_order("job-1/agent-0", r.replicas)[0].url
    spill = next(u for u in URLS if u != home)
    assert await r.acquire("job-1/agent-0", hint=spill) == spill
    r.release(spill, "ok")
    assert await r.acquire("job-1/agent-0") == home, "without a hint the hash decides"


async def test_a_replica_hint_gives_way_above_the_sticky_bound_and_when_out_of_rotation() -> None:
    r = router("prefix-affinity")
    hinted = URLS[0]
    held = [await r.acquire(f"job-{i}", hint=hinted) for i in range(40)]
    total = len(held)
    # The hint holds until the replica reaches ceil(1.5 * mean) + 1 of the load, then spills.
    assert 1.5 * total / len(URLS) <= held.count(hinted) <= 1.5 * total / len(URLS) + 2
    assert len(set(held)) > 1
    for url in held:
        r.release(url, "ok")
    assert await r.acquire("job-x", hint=hinted, avoid={hinted}) != hinted
    r.replicas[0].eject(r._clock(), r.settings)
    assert await r.acquire("job-x", hint=hinted) != hinted


@pytest.mark.parametrize("policy", ["round-robin", "least-load"])
async def test_other_policies_ignore_the_replica_hint(policy: str) -> None:
    r = router(policy)
    picks = set()
    for _ in range(8):
        url = await r.acquire(None, hint=URLS[0])
        r.release(url, "ok")
        picks.add(url)
    assert len(picks) == len(URLS)
