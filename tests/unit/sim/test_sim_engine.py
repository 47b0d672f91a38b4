"""The simulator's cost model, driven directly: prefill, prefix cache, batching, queueing.

Durations are asserted in modelled seconds (exact, independent of how busy this machine is);
the engine runs at a small time scale so each test takes milliseconds of real time.
"""

from __future__ import annotations

import asyncio

import pytest

from kswarm.sim.config import SimConfig
from kswarm.sim.engine import Engine, PrefixCache

FAST = 0.01


def prompt(tokens: int, tag: str = "") -> str:
    return (tag + "x" * (tokens * 4))[: tokens * 4]


async def test_time_to_first_token_drops_on_a_prefix_cache_hit() -> None:
    engine = Engine(SimConfig(time_scale=FAST))
    text = prompt(6000)
    cold = engine.submit(text, 10)
    await cold.done
    warm = engine.submit(text + "more words from the user", 10)
    await warm.done
    assert cold.cached_tokens == 0
    assert warm.cached_tokens == 6000
    cold_ttft = cold.first_token_at - cold.arrival  # type: ignore[operator]
    warm_ttft = warm.first_token_at - warm.arrival  # type: ignore[operator]
    assert cold_ttft == pytest.approx(6000 / 20_000)
    assert warm_ttft == pytest.approx((warm.prompt_tokens - 6000) / 20_000)
    assert warm_ttft < cold_ttft / 50


async def test_inter_token_latency_grows_with_the_batch() -> None:
    config = SimConfig(time_scale=FAST)
    engine = Engine(config)
    alone = engine.submit(prompt(16, "a"), 101)
    await alone.done
    batch = [engine.submit(prompt(16, f"b{i}"), 101) for i in range(128)]
    await asyncio.gather(*(r.done for r in batch))

    def itl(r: object) -> float:
        return (r.finished_at - r.first_token_at) / 100  # type: ignore[attr-defined]

    assert itl(alone) == pytest.approx(config.itl(1))
    assert itl(batch[-1]) > 1.4 * itl(alone)
    assert itl(batch[-1]) <= config.itl(128) + 1e-9


async def test_requests_beyond_max_num_seqs_wait_in_a_fifo_queue() -> None:
    engine = Engine(SimConfig(time_scale=FAST, max_num_seqs=4))
    requests = [engine.submit(prompt(100, f"q{i}"), 50) for i in range(8)]
    running, waiting, _ = engine.sample()
    assert (running, waiting) == (4, 4)
    await asyncio.gather(*(r.done for r in requests))
    first, last = requests[:4], requests[4:]
    assert all(r.admitted_at == r.arrival for r in first)
    assert all(r.admitted_at > r.arrival for r in last)  # type: ignore[operator]
    assert min(r.admitted_at for r in last) >= min(r.finished_at for r in first)  # type: ignore[type-var]
    assert engine.sample()[:2] == (0, 0)


async def test_prefill_is_served_one_prompt_after_another() -> None:
    engine = Engine(SimConfig(time_scale=FAST))
    a = engine.submit(prompt(2000, "a"), 5)
    b = engine.submit(prompt(2000, "b"), 5)
    await asyncio.gather(a.done, b.done)
    assert a.first_token_at is not None and b.first_token_at is not None
    assert a.first_token_at == pytest.approx(a.arrival + 0.1)
    # b's prefill starts when a's ends (or when b arrives, if later) and takes its own 0.1 s
    assert b.first_token_at == pytest.approx(max(b.arrival, a.first_token_at) + 0.1)


async def test_an_aborted_request_frees_its_slot() -> None:
    engine = Engine(SimConfig(time_scale=FAST, max_num_seqs=1))
    long = engine.submit(prompt(10, "l"), 100_000)
    short = engine.submit(prompt(10, "s"), 5)
    await long.first_token
    engine.abort(long)
    await asyncio.wait_for(short.done, 1)
    assert engine.metrics.success == {"abort": 1, "stop": 1}


async def test_time_scale_zero_answers_at_once() -> None:
    engine = Engine(SimConfig(time_scale=0))
    request = engine.submit(prompt(1000), 100)
    assert request.done.done()
    assert request.model_seconds == pytest.approx(1000 / 20_000 + 99 * 0.008)


def test_prefix_cache_counts_only_leading_full_blocks_and_evicts_the_oldest() -> None:
    cache = PrefixCache(capacity_blocks=4, block_chars=4)
    assert cache.lookup_and_insert("aaaabbbbcc") == 0
    assert cache.lookup_and_insert("aaaabbbbdddd") == 2
    assert cache.lookup_and_insert("zzzzbbbb") == 0  # same block, different chain
    assert len(cache) == 4
    assert cache.lookup_and_insert("aaaabbbb") == 0  # evicted by the last insert
