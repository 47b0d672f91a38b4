"""The simulator's HTTP surface: vLLM's errors, ``/health``, and ``/metrics`` that move."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from llm_sim_support import TOOLS, StartSim, talkative, until
from prometheus_client.parser import text_string_to_metric_families

SYSTEM = {"role": "system", "content": "Shared instructions for every agent of the job. " * 80}


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "model": "kswarm-sim",
        "messages": [SYSTEM, {"role": "user", "content": "go"}],
    }
    b.update(changes)
    return b


async def metrics(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Samples by name (summed over labels), parsed with prometheus_client."""
    text = (await http.get(url + "/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.get("model_name") == "kswarm-sim", sample
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def test_unknown_model_is_a_404_in_vllms_words(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", json=body(model="x"))
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": "The model `x` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        }
    }


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"model": "kswarm-sim", "messages": []}', "messages", id="no-messages"),
        pytest.param(
            b'{"model": "kswarm-sim", "messages": [{"role": "user", "content": "a"}], '
            b'"tool_choice": "required"}',
            "`tools` must be set",
            id="choice-without-tools",
        ),
        pytest.param(
            b'{"model": "kswarm-sim", "messages": [{"role": "user", "content": "a"}], '
            b'"max_tokens": 140000}',
            "maximum context length",
            id="too-long",
        ),
    ],
)
async def test_a_malformed_body_is_a_400(start_sim: StartSim, content: bytes, needle: str) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", content=content)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "BadRequestError"
    assert needle in r.json()["error"]["message"]


async def test_health_answers_200_until_told_otherwise(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        assert (await http.get(replica.url + "/health")).status_code == 200
        replica.healthy = False
        assert (await http.get(replica.url + "/health")).status_code == 503


async def test_answer_reports_modelled_seconds_and_the_replica(start_sim: StartSim) -> None:
    (replica,) = await start_sim(time_scale=0.01)
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", json=body())
    extra = r.json()["kswarm"]
    assert extra["replica"] == "sim-0"
    assert extra["model_seconds"] > 0


async def test_answers_are_deterministic_per_conversation(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        answers = [
            (await http.post(replica.url + "/v1/chat/completions", json=body(tools=TOOLS))).json()
            for _ in range(2)
        ]
    assert answers[0]["choices"] == answers[1]["choices"]


async def test_prefix_cache_hits_grow_when_the_same_prefix_repeats(start_sim: StartSim) -> None:
    (replica,) = await start_sim(behaviour=talkative(20))
    async with httpx.AsyncClient() as http:
        before = await metrics(http, replica.url)
        for i in range(3):
            messages = [SYSTEM, {"role": "user", "content": f"question {i}"}]
            await http.post(replica.url + "/v1/chat/completions", json=body(messages=messages))
        after = await metrics(http, replica.url)
    assert before["vllm:prefix_cache_hits_total"] == 0
    queries = after["vllm:prefix_cache_queries_total"]
    hits = after["vllm:prefix_cache_hits_total"]
    assert hits > 0.6 * queries  # the 2nd and 3rd request hit the shared system prompt
    assert after["vllm:request_success_total"] == 3
    assert after["vllm:prompt_tokens_total"] == queries
    assert after["vllm:generation_tokens_total"] == 60
    assert after["vllm:time_to_first_token_seconds_count"] == 3
    assert after["vllm:inter_token_latency_seconds_count"] == 57


async def test_running_and_waiting_show_the_batch_and_the_queue(start_sim: StartSim) -> None:
    (replica,) = await start_sim(time_scale=1.0, max_num_seqs=2, behaviour=talkative(1000))
    async with httpx.AsyncClient() as http:
        sent = [
            asyncio.ensure_future(
                http.post(
                    replica.url + "/v1/chat/completions",
                    json=body(
                        max_tokens=5, messages=[{"role": "user", "content": f"long job {i}"}]
                    ),
                )
            )
            for i in range(5)
        ]
        await until(lambda: replica.engine.running + len(replica.engine.waiting) == 5)
        during = await metrics(http, replica.url)
        for task in sent:
            task.cancel()
        await asyncio.gather(*sent, return_exceptions=True)
    assert during["vllm:num_requests_running"] == 2
    assert during["vllm:num_requests_waiting"] == 3
    assert 0 < during["vllm:kv_cache_usage_perc"] < 1
