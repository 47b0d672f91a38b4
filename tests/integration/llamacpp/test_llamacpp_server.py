"""The real llama.cpp server as a pool: health, tool calls, the context window it reports."""

from __future__ import annotations

import json

from kswarm.llm import ChatRequest, LLMClient, PoolConfig

SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the company corpus.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


async def test_tool_choice_required_gets_a_well_formed_call_with_the_server_s_usage(
    llamacpp_url: str,
) -> None:
    pool = PoolConfig(name="llama", model="smollm2", replicas=(llamacpp_url,))
    client = LLMClient()
    try:
        result = await client.chat(
            pool,
            ChatRequest(
                messages=[{"role": "user", "content": "Where is Vaskora Analytics based?"}],
                tools=[SEARCH],
                tool_choice="required",
                max_tokens=40,
                temperature=0.0,
            ),
        )
    finally:
        await client.aclose()
    (call,) = result.tool_calls[:1]
    assert call["function"]["name"] == "search"
    assert isinstance(json.loads(call["function"]["arguments"]), dict)
    assert result.input_tokens > 50  # the tools are in the prompt (the ChatML tools template)
    assert 0 < result.output_tokens <= 40


async def test_the_context_window_is_read_from_the_server_s_slot_size(llamacpp_url: str) -> None:
    client = LLMClient()
    try:
        unknown = PoolConfig(name="llama", model="smollm2", replicas=(llamacpp_url,))
        given = PoolConfig(
            name="llama2", model="smollm2", replicas=(llamacpp_url,), context_window=1024
        )
        # 8192 tokens shared by 4 slots: each request gets 2048.
        assert await client.context_window(unknown) == 2048
        assert await client.context_window(given) == 1024
    finally:
        await client.aclose()


async def test_token_ids_and_log_probabilities_come_from_the_real_server(
    llamacpp_url: str,
) -> None:
    """llama.cpp returns no prompt ids with an answer; the client gets them by rendering and
    tokenizing the same request on the server, and they must be exactly the prompt the server
    counted. The answer's ids come with its log-probabilities and must spell its text."""
    pool = PoolConfig(
        name="llama", model="smollm2", replicas=(llamacpp_url,), return_token_ids=True
    )
    client = LLMClient()
    try:
        result = await client.chat(
            pool,
            ChatRequest(
                messages=[
                    {"role": "system", "content": "Answer in one short sentence."},
                    {"role": "user", "content": "What does a search engine do?"},
                ],
                tools=[SEARCH],
                max_tokens=24,
                temperature=0.0,
                extra_body={"return_token_ids": True, "logprobs": True},
            ),
        )
        answered = result.attempts[-1]  # what the ledger records per model call
        spelled = await client.http.post(
            f"{llamacpp_url}/detokenize", json={"tokens": answered.completion_token_ids}
        )
    finally:
        await client.aclose()
    assert answered.prompt_token_ids is not None and answered.completion_token_ids is not None
    assert len(answered.prompt_token_ids) == result.input_tokens > 50  # tools in the prompt
    assert len(answered.completion_token_ids) == result.output_tokens > 0
    assert answered.logprobs is not None and len(answered.logprobs) == result.output_tokens
    assert all(p <= 0.0 for p in answered.logprobs)
    if result.content:  # a text answer: the ids spell it (a tool call is parsed out of them)
        assert spelled.json()["content"].strip() == result.content.strip()
