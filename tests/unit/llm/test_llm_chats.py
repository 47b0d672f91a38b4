"""Reading answers: whole completions and streams of deltas, as vLLM and OpenAI send them.

The chunks below follow what ``vllm serve --enable-auto-tool-choice --tool-call-parser hermes``
streams (a role chunk, a tool-call header with id and name, argument fragments by ``index``, a
finish chunk, then usage with empty ``choices``); no vLLM server can run here, so they are
written out by hand.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kswarm.llm.chats import ChatRequest, StreamAssembler, parse_completion
from kswarm.llm.errors import MalformedResponse, ServerError


def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return json.dumps(
        {"id": "c1", "model": "m", "object": "chat.completion.chunk", "choices": choices, **extra}
    )


def tool_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


HERMES_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk(tool_delta(0, id="chatcmpl-tool-a", type="function", function={"name": "search"})),
    chunk(tool_delta(0, function={"arguments": '{"query": "ac'})),
    chunk(tool_delta(1, id="chatcmpl-tool-b", type="function", function={"name": "fetch"})),
    chunk(tool_delta(0, function={"arguments": 'me"}'})),
    chunk(tool_delta(1, function={"arguments": '{"url": "x"}'})),
    chunk({}, "tool_calls"),
    chunk(
        None,
        usage={
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 96},
        },
        kswarm={"model_seconds": 0.5},
    ),
    "[DONE]",
]


def assemble(lines: list[str]) -> StreamAssembler:
    assembler = StreamAssembler(started=0.0)
    for i, line in enumerate(lines):
        assembler.feed_line(line, now=float(i))
    return assembler


def test_assembles_parallel_tool_calls_split_over_many_chunks() -> None:
    assembler = assemble(HERMES_STREAM)
    result = assembler.result()
    assert assembler.done
    assert result.finish_reason == "tool_calls"
    calls = result.message["tool_calls"]
    assert [c["id"] for c in calls] == ["chatcmpl-tool-a", "chatcmpl-tool-b"]
    assert [c["function"]["name"] for c in calls] == ["search", "fetch"]
    assert calls[0]["function"]["arguments"] == '{"query": "acme"}'
    assert calls[1]["function"]["arguments"] == '{"url": "x"}'
    assert result.message["content"] is None


def test_takes_usage_cached_tokens_and_model_seconds_from_the_last_chunk() -> None:
    result = assemble(HERMES_STREAM).result()
    assert (result.input_tokens, result.output_tokens, result.cached_tokens) == (120, 30, 96)
    assert result.model_seconds == 0.5


def test_time_to_first_token_is_the_first_generated_delta_not_the_role_chunk() -> None:
    assert assemble(HERMES_STREAM).result().ttft_seconds == 1.0


def test_assembles_content_and_reasoning() -> None:
    lines = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "think "}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({"content": ""}, "stop"),
    ]
    result = assemble(lines).result()
    assert result.message["content"] == "Hello"
    assert result.message["reasoning_content"] == "think "
    assert result.finish_reason == "stop"
    assert "tool_calls" not in result.message


def test_refuses_tool_call_arguments_that_are_not_json() -> None:
    lines = [
        chunk(
            tool_delta(
                0, id="t", type="function", function={"name": "search", "arguments": '{"query": '}
            )
        ),
        chunk({}, "tool_calls"),
    ]
    with pytest.raises(MalformedResponse) as e:
        assemble(lines).result()
    assert e.value.raw == '{"query": '
    assert e.value.retryable


def test_an_error_object_in_the_stream_becomes_an_llm_error() -> None:
    error = json.dumps({"error": {"message": "engine died", "code": 500}})
    with pytest.raises(ServerError, match="engine died"):
        assemble([chunk({"content": "a"}), error])


def test_parses_a_whole_completion_and_leaves_arguments_as_a_string() -> None:
    body = {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "search", "arguments": '{"q": 1}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    result = parse_completion(json.dumps(body))
    assert result.message["tool_calls"][0]["function"]["arguments"] == '{"q": 1}'
    assert (result.input_tokens, result.output_tokens, result.cached_tokens) == (10, 5, 0)
    assert result.model_seconds is None and result.response_id == "chatcmpl-1"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("<html>oops</html>", id="not-json"),
        pytest.param('{"choices": []}', id="no-choice"),
        pytest.param('{"choices": [{"message": "hi"}]}', id="message-not-object"),
    ],
)
def test_a_body_that_is_not_a_completion_is_malformed(raw: str) -> None:
    with pytest.raises(MalformedResponse):
        parse_completion(raw)


def test_request_body_asks_for_usage_when_streaming_and_merges_extra_fields() -> None:
    request = ChatRequest(
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "f"}}],
        tool_choice="auto",
        max_tokens=16,
        stream=True,
        extra_body={"top_k": 5},
    )
    body = request.body("pool-model")
    assert body["model"] == "pool-model"
    assert body["stream_options"] == {"include_usage": True}
    assert body["top_k"] == 5 and body["max_tokens"] == 16
    assert ChatRequest(model="other", messages=[]).body("pool-model")["model"] == "other"
