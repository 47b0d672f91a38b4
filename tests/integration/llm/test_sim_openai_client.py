"""The official ``openai`` client talks to the simulator as to vLLM: tool calls, streams, usage."""

from __future__ import annotations

import json

import openai
from llm_sim_support import TOOLS, StartSim

MESSAGES = [
    {"role": "system", "content": "You are a researcher. " * 50},
    {"role": "user", "content": "Find the founding year of Acme."},
]


async def test_gets_tool_calls_back_without_streaming(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    client = openai.AsyncOpenAI(base_url=replica.url + "/v1", api_key="unused")
    completion = await client.chat.completions.create(
        model="kswarm-sim", messages=MESSAGES, tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "search"
    assert json.loads(call.function.arguments) == {}
    assert completion.usage is not None and completion.usage.prompt_tokens > 250
    assert completion.usage.prompt_tokens_details is not None
    await client.close()


async def test_streams_tool_call_deltas_with_usage_in_the_last_chunk(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    client = openai.AsyncOpenAI(base_url=replica.url + "/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model="kswarm-sim",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    names = [
        tc.function.name
        for c in chunks
        for choice in c.choices
        for tc in choice.delta.tool_calls or []
        if tc.function and tc.function.name
    ]
    arguments = "".join(
        tc.function.arguments or ""
        for c in chunks
        for choice in c.choices
        for tc in choice.delta.tool_calls or []
        if tc.function
    )
    finishes = [
        choice.finish_reason for c in chunks for choice in c.choices if choice.finish_reason
    ]
    assert names == ["search"] and json.loads(arguments) == {}
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    await client.close()


async def test_answers_in_text_when_the_last_message_is_a_tool_result(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    client = openai.AsyncOpenAI(base_url=replica.url + "/v1", api_key="unused")
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Acme was founded in 1901."},
    ]
    stream = await client.chat.completions.create(
        model="kswarm-sim", messages=messages, tools=TOOLS, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "ok"
    await client.close()


async def test_lists_the_served_model(start_sim: StartSim) -> None:
    (replica,) = await start_sim(model="my-model")
    client = openai.AsyncOpenAI(base_url=replica.url + "/v1", api_key="unused")
    models = await client.models.list()
    assert [m.id for m in models.data] == ["my-model"]
    await client.close()
