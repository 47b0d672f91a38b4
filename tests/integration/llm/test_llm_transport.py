"""The shared client's transport (httpx over aiohttp's pool) behaves like httpx's own."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from llm_sim_support import FAST_RETRY, StartSim, pool_of

from kswarm.llm import ChatRequest, ClientSettings, LLMClient
from kswarm.llm.client import http_client


async def test_refused_connections_are_httpx_connect_errors(closed_port_url: str) -> None:
    async with http_client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(closed_port_url + "/health")


async def test_a_silent_server_is_an_httpx_read_timeout(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    body = {
        "model": "kswarm-sim",
        "messages": [{"role": "user", "content": "x"}],
        "kswarm_fault": "hang",
    }
    async with http_client() as http:
        t0 = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            await http.post(
                replica.url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(0.2)
            )
        assert time.perf_counter() - t0 < 2.0


async def test_streams_arrive_in_pieces(start_sim: StartSim) -> None:
    (replica,) = await start_sim(time_scale=0.01)
    body = {"model": "kswarm-sim", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with http_client() as http:
        async with http.stream("POST", replica.url + "/v1/chat/completions", json=body) as r:
            lines = [line async for line in r.aiter_lines() if line]
    assert lines[0].startswith("data: {") and lines[-1] == "data: [DONE]"


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
async def test_both_transports_carry_a_chat_call(start_sim: StartSim, transport: str) -> None:
    (replica,) = await start_sim()
    client = LLMClient(settings=ClientSettings(transport=transport))
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    result = await client.chat(pool_of(replica.url), request, retry=FAST_RETRY)
    await client.aclose()
    assert result.content == "ok"


async def test_a_thousand_calls_in_flight_share_one_client(start_sim: StartSim) -> None:
    replicas = await start_sim(2, time_scale=0)
    client = LLMClient()
    pool = pool_of(*(r.url for r in replicas), max_concurrency=1000)
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            client.chat(pool, ChatRequest(messages=[{"role": "user", "content": f"{i}"}]))
            for i in range(1000)
        )
    )
    elapsed = time.perf_counter() - t0
    await client.aclose()
    assert {r.content for r in results} == {"ok"}
    assert elapsed < 15, f"1,000 concurrent calls took {elapsed:.1f} s"
