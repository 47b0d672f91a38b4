"""The shared client's transport (httpx over aiohttp's pool) behaves like httpx's own."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from llm_sim_support import FAST_RETRY, StartSim, pool_of

from kswarm.llm import ChatRequest, ClientSettings, LLMClient
from kswarm.llm.client import http_client
from kswarm.llm.errors import RateLimited
from kswarm.llm.pacing import RetryPolicy


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


async def test_a_chat_call_skips_httpx_and_a_streamed_one_goes_through_it(
    start_sim: StartSim,
) -> None:
    """A client of its own sends a non-streamed chat call straight through aiohttp; a stream,
    and every call of a client that was handed in, go through httpx (its request hook)."""
    (replica,) = await start_sim()
    pool = pool_of(replica.url)
    through_httpx: list[str] = []

    async def seen(request: httpx.Request) -> None:
        if request.url.path.startswith("/v1/chat"):  # not the router's /metrics and /health
            through_httpx.append(request.url.path)

    own = LLMClient()
    own.http.event_hooks["request"].append(seen)
    try:
        plain = await own.chat(pool, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
        assert (plain.content, through_httpx) == ("ok", [])
        streamed = await own.chat(
            pool, ChatRequest(messages=[{"role": "user", "content": "hi"}], stream=True)
        )
        assert (streamed.content, through_httpx) == ("ok", ["/v1/chat/completions"])
    finally:
        await own.aclose()

    async with http_client() as http:
        http.event_hooks["request"].append(seen)
        given = LLMClient(http=http)
        result = await given.chat(pool, ChatRequest(messages=[{"role": "user", "content": "hi"}]))
        await given.aclose()
    assert (result.content, through_httpx) == ("ok", ["/v1/chat/completions"] * 2)


@contextlib.asynccontextmanager
async def _serve(handler: Any) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_direct_path_sends_what_httpx_did_and_reads_any_answer_as_httpx_does() -> None:
    """Headers the server sees (the agent, the key, no compression asked for); an answer
    compressed anyway, in a charset of its own, reads as through httpx; a 429's Retry-After and
    body reach the error."""
    received: list[dict[str, str]] = []
    answer = json.dumps(
        {
            "id": "x",
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "d\u00e9j\u00e0"}}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        },
        ensure_ascii=False,  # latin-1 bytes that UTF-8 would misread
    )

    async def handler(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        if len(received) == 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "7"})
        return web.Response(
            body=gzip.compress(answer.encode("latin-1")),
            headers={
                "Content-Type": "application/json; charset=latin-1",
                "Content-Encoding": "gzip",
            },
        )

    async with _serve(handler) as url:
        client = LLMClient()
        pool = pool_of(url, api_key="secret")
        request = ChatRequest(messages=[{"role": "user", "content": "hi"}])
        try:
            with pytest.raises(RateLimited) as limited:
                await client.chat(pool, request, retry=RetryPolicy(max_attempts=1))
            result = await client.chat(pool, request, retry=RetryPolicy(max_attempts=1))
        finally:
            await client.aclose()
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    assert "slow down" in str(limited.value)
    assert result.content == "d\u00e9j\u00e0"
    first = received[0]
    assert first["User-Agent"] == "kswarm"
    assert first["Authorization"] == "Bearer secret"
    assert first["Content-Type"] == "application/json"
    assert "Accept-Encoding" not in first
