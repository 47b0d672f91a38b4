"""The client against real simulator replicas: what it retries, what it never does, what it reports.

Faults are forced per request with the simulator's ``kswarm_fault`` body field (``"503:1"``: the
first time only), so each test shows one behaviour and ends in well under a second.
"""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest
from llm_sim_support import FAST_RETRY, TOOLS, StartSim, pool_of

from kswarm.llm import (
    Attempt,
    BadRequest,
    ChatRequest,
    LLMClient,
    LLMTimeout,
    MalformedResponse,
    ModelNotServed,
    Overloaded,
    RetryPolicy,
    ServerError,
)


def request(fault: str | None = None, **fields: Any) -> ChatRequest:
    extra = {"kswarm_fault": fault} if fault else {}
    fields.setdefault("messages", [{"role": "user", "content": f"task {random.random()}"}])
    return ChatRequest(extra_body=extra, **fields)


class Recorder:
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    async def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)


@pytest.mark.parametrize(
    ("fault", "outcomes"),
    [
        pytest.param("503:1", ["http_503", "ok"], id="503"),
        pytest.param("429:1", ["http_429", "ok"], id="429"),
        pytest.param("500:2", ["http_500", "http_500", "ok"], id="500"),
    ],
)
async def test_retries_overload_rate_limits_and_server_errors(
    start_sim: StartSim, llm_client: LLMClient, fault: str, outcomes: list[str]
) -> None:
    (replica,) = await start_sim(rate_limit_retry_after_seconds=0)
    recorder = Recorder()
    result = await llm_client.chat(
        pool_of(replica.url), request(fault), retry=FAST_RETRY, on_attempt=recorder
    )
    assert [a.outcome for a in result.attempts] == outcomes
    assert recorder.attempts == result.attempts
    assert result.attempts[0].http_status == int(fault[:3])
    assert result.message["content"] == "ok"


@pytest.mark.parametrize("fault", ["429:1", "503:1"])
async def test_waits_at_least_retry_after_before_the_next_attempt(
    start_sim: StartSim, llm_client: LLMClient, fault: str
) -> None:
    (replica,) = await start_sim(rate_limit_retry_after_seconds=0.3, retry_after_seconds=0.3)
    result = await llm_client.chat(pool_of(replica.url), request(fault), retry=FAST_RETRY)
    first, second = result.attempts
    gap = second.started_at - (first.started_at + first.latency_seconds)
    assert gap >= 0.29


async def test_gives_up_after_max_attempts_and_carries_every_attempt(
    start_sim: StartSim, llm_client: LLMClient
) -> None:
    (replica,) = await start_sim()
    recorder = Recorder()
    policy = RetryPolicy(max_attempts=3, initial_interval=0.01)
    with pytest.raises(Overloaded) as e:
        await llm_client.chat(
            pool_of(replica.url), request("503"), retry=policy, on_attempt=recorder
        )
    assert [a.outcome for a in e.value.attempts] == ["http_503"] * 3
    assert recorder.attempts == e.value.attempts
    assert e.value.pool == "test" and e.value.replica == replica.url and e.value.status == 503


async def test_a_hung_request_times_out_and_is_retried(
    start_sim: StartSim, llm_client: LLMClient
) -> None:
    (replica,) = await start_sim()
    pool = pool_of(replica.url, request_timeout_seconds=0.2)
    t0 = time.perf_counter()
    with pytest.raises(LLMTimeout) as e:
        await llm_client.chat(
            pool, request("hang"), retry=RetryPolicy(max_attempts=2, initial_interval=0.01)
        )
    assert [a.outcome for a in e.value.attempts] == ["timeout", "timeout"]
    assert all(0.19 < a.latency_seconds < 1.0 for a in e.value.attempts)
    assert time.perf_counter() - t0 < 3.0
    fresh = LLMClient()  # three timeouts in a row would have ejected the replica
    ok = await fresh.chat(pool, request("hang:1"), retry=FAST_RETRY)
    await fresh.aclose()
    assert [a.outcome for a in ok.attempts] == ["timeout", "ok"]


async def test_a_refused_connection_is_retried_on_another_replica(
    start_sim: StartSim, llm_client: LLMClient, closed_port_url: str
) -> None:
    (replica,) = await start_sim()
    pool = pool_of(closed_port_url, replica.url, router="round-robin")
    result = await llm_client.chat(pool, request(), retry=FAST_RETRY)
    assert [(a.replica, a.outcome) for a in result.attempts] == [
        (closed_port_url, "connect_error"),
        (replica.url, "ok"),
    ]
    assert result.replica == replica.url


@pytest.mark.parametrize(
    ("fields", "error", "outcome"),
    [
        pytest.param({"messages": []}, BadRequest, "bad_request", id="400"),
        pytest.param({"model": "nope"}, ModelNotServed, "model_not_served", id="unknown-model"),
        pytest.param({"tool_choice": "required"}, BadRequest, "bad_request", id="choice-no-tools"),
    ],
)
async def test_never_retries_a_bad_request_or_an_unknown_model(
    start_sim: StartSim,
    llm_client: LLMClient,
    fields: dict[str, Any],
    error: type[BadRequest],
    outcome: str,
) -> None:
    (replica,) = await start_sim()
    with pytest.raises(error) as e:
        await llm_client.chat(pool_of(replica.url), request(**fields), retry=FAST_RETRY)
    assert type(e.value) is error
    assert [a.outcome for a in e.value.attempts] == [outcome]
    assert not e.value.retryable


def broken_arguments(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    call = {"id": "t1", "type": "function", "function": {"name": "search", "arguments": '{"q": '}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_tool_call_arguments_that_are_not_json_are_malformed_and_retried(
    start_sim: StartSim, llm_client: LLMClient, stream: bool
) -> None:
    (replica,) = await start_sim(behaviour=broken_arguments)
    policy = RetryPolicy(max_attempts=2, initial_interval=0.01)
    with pytest.raises(MalformedResponse) as e:
        await llm_client.chat(
            pool_of(replica.url), request(tools=TOOLS, stream=stream), retry=policy
        )
    assert e.value.raw == '{"q": '
    assert [a.outcome for a in e.value.attempts] == ["malformed_response"] * 2


async def test_streaming_measures_time_to_first_token_and_cached_tokens(
    start_sim: StartSim, llm_client: LLMClient
) -> None:
    (replica,) = await start_sim(time_scale=0.1)  # a cold prefill of 0.4 s model = 40 ms real
    messages = [{"role": "system", "content": "rules " * 5000}, {"role": "user", "content": "go"}]
    pool = pool_of(replica.url)
    first = await llm_client.chat(pool, request(messages=messages, tools=TOOLS, stream=True))
    second = await llm_client.chat(pool, request(messages=messages, tools=TOOLS, stream=True))
    assert (
        first.finish_reason == "tool_calls" and first.tool_calls[0]["function"]["name"] == "search"
    )
    assert first.cached_tokens == 0 and second.cached_tokens > 7000
    assert first.ttft_seconds is not None and second.ttft_seconds is not None
    assert second.ttft_seconds < first.ttft_seconds
    assert first.model_seconds is not None and first.input_tokens > 7000


async def test_sends_the_api_key_as_a_bearer_token(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    seen: list[tuple[str, str]] = []

    async def remember(request: httpx.Request) -> None:
        seen.append((request.url.path, request.headers.get("authorization", "")))

    async with httpx.AsyncClient(event_hooks={"request": [remember]}) as http:
        client = LLMClient(http=http)
        await client.chat(pool_of(replica.url, api_key="sk-test"), request(), retry=FAST_RETRY)
        await client.aclose()
    assert ("/v1/chat/completions", "Bearer sk-test") in seen
    assert {auth for _, auth in seen} == {"Bearer sk-test"}  # probes and scrapes carry it too


async def test_the_module_level_chat_shares_one_client(start_sim: StartSim) -> None:
    from kswarm.llm import chat, close_default_client, default_client

    (replica,) = await start_sim()
    result = await chat(pool_of(replica.url), request(), retry=FAST_RETRY)
    assert result.content == "ok"
    assert default_client() is default_client()
    await close_default_client()


async def test_server_errors_are_retryable_server_errors(
    start_sim: StartSim, llm_client: LLMClient
) -> None:
    (replica,) = await start_sim()
    with pytest.raises(ServerError) as e:
        await llm_client.chat(
            pool_of(replica.url), request("500"), retry=RetryPolicy(max_attempts=1)
        )
    assert e.value.retryable and len(e.value.attempts) == 1
