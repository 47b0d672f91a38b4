"""Routing against real simulator replicas: /metrics-driven choice, ejection and recovery.

The router's clock is a fake one here, so a cool-down of seconds passes at once; every HTTP
exchange (calls, ``/health``, ``/metrics``) is real.
"""

from __future__ import annotations

import asyncio
import collections

import httpx
from llm_sim_support import FAST_RETRY, StartSim, pool_of, talkative, until

from kswarm.llm import ChatRequest, LLMClient, ReplicaUnavailable, RouterSettings
from kswarm.llm.router import Router


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(i: int, key: str | None = None) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], prefix_key=key)


async def test_least_load_follows_the_engines_metrics(start_sim: StartSim) -> None:
    busy, idle = await start_sim(2, time_scale=1.0, max_num_seqs=2, behaviour=talkative(5000))
    async with httpx.AsyncClient() as http:
        body = {"model": "kswarm-sim", "messages": [{"role": "user", "content": "long"}]}
        load = [
            asyncio.ensure_future(http.post(busy.url + "/v1/chat/completions", json=body))
            for _ in range(6)
        ]
        await until(lambda: busy.engine.running + len(busy.engine.waiting) == 6)
        router = Router(pool_of(busy.url, idle.url, router="least-load"), http=http)
        await router.scrape_metrics()
        picks = collections.Counter([await router.acquire(None) for _ in range(8)])
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        await router.aclose()
    assert busy_metrics_seen(router, busy.url) == (2, 4)
    assert picks == {idle.url: 8}


def busy_metrics_seen(router: Router, url: str) -> tuple[float, float]:
    (replica,) = [r for r in router.replicas if r.url == url]
    assert replica.metrics is not None
    return replica.metrics.running, replica.metrics.waiting


async def test_prefix_affinity_keeps_a_jobs_prefix_on_one_replica(start_sim: StartSim) -> None:
    replicas = await start_sim(4)
    client = LLMClient()
    pool = pool_of(*(r.url for r in replicas))
    system = {"role": "system", "content": "job instructions " * 500}
    results = [
        await client.chat(
            pool,
            ChatRequest(
                messages=[system, {"role": "user", "content": f"part {i}"}], prefix_key="j"
            ),
            retry=FAST_RETRY,
        )
        for i in range(6)
    ]
    await client.aclose()
    assert len({r.replica for r in results}) == 1
    assert [r.cached_tokens > 1500 for r in results] == [False] + [True] * 5


async def test_a_replica_that_keeps_erroring_is_ejected_and_returns_when_healthy(
    start_sim: StartSim,
) -> None:
    flaky, steady = await start_sim(2)
    clock = Clock()
    client = LLMClient(clock=clock, router_settings=RouterSettings(eject_after_errors=3))
    pool = pool_of(flaky.url, steady.url, router="round-robin")
    flaky.reconfigure(fail_500_rate=1.0)
    served = [(await client.chat(pool, ask(i), retry=FAST_RETRY)).replica for i in range(8)]
    router = client.router(pool)
    (flaky_state,) = [r for r in router.replicas if r.url == flaky.url]
    assert flaky_state.ejected
    assert set(served) == {steady.url}
    assert [
        (await client.chat(pool, ask(i), retry=FAST_RETRY)).attempts[0].replica for i in range(4)
    ] == [steady.url] * 4

    flaky.reconfigure(fail_500_rate=0.0)
    await router.check_health()
    assert flaky_state.ejected, "still cooling down"
    clock.now += 10.0
    await router.check_health()
    assert not flaky_state.ejected
    served = {(await client.chat(pool, ask(i), retry=FAST_RETRY)).replica for i in range(4)}
    assert served == {flaky.url, steady.url}
    await client.aclose()


async def test_a_stopped_replica_stays_out_until_its_health_answers_again(
    start_sim: StartSim,
) -> None:
    gone, steady = await start_sim(2)
    clock = Clock()
    http = httpx.AsyncClient()
    router = Router(pool_of(gone.url, steady.url, router="round-robin"), http=http, clock=clock)
    await gone.stop()
    await router.check_health()
    (gone_state,) = [r for r in router.replicas if r.url == gone.url]
    assert gone_state.ejected and gone_state.ejected_until == clock.now + 10.0

    clock.now += 10.0
    await router.check_health()  # still refused: out again, for twice as long
    assert gone_state.ejected_until == clock.now + 20.0

    await gone.start()  # same port
    clock.now += 20.0
    await router.check_health()
    assert not gone_state.ejected
    await router.aclose()
    await http.aclose()


async def test_failing_health_ejects_and_all_ejected_means_unavailable(
    start_sim: StartSim,
) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        router = Router(pool_of(replica.url), http=http, clock=Clock())
        replica.healthy = False
        threshold = router.settings.health_failures_to_eject
        for _ in range(threshold - 1):  # a failed probe or two from a busy worker: still in
            await router.check_health()
            assert not router.replicas[0].ejected
            assert await router.acquire(None) == replica.url
            router.release(replica.url, "ok")
        replica.healthy = True  # one good answer starts the count again
        await router.check_health()
        replica.healthy = False
        for _ in range(threshold - 1):
            await router.check_health()
        assert not router.replicas[0].ejected
        await router.check_health()
        assert router.replicas[0].ejected
        try:
            await router.acquire(None)
        except ReplicaUnavailable as e:
            assert e.retryable
        else:
            raise AssertionError("expected ReplicaUnavailable")
        await router.aclose()


async def test_an_endpoint_without_a_health_route_is_not_ejected() -> None:
    from aiohttp import web

    app = web.Application()  # no routes at all: every probe answers 404
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with httpx.AsyncClient() as http:
        router = Router(pool_of(url), http=http, clock=Clock())
        await router.check_health()
        await router.scrape_metrics()
        assert not router.replicas[0].ejected and router.replicas[0].metrics is None
        assert not router.replicas[0].serves_metrics
        await router.aclose()
    await runner.cleanup()
