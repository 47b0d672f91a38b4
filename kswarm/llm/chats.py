"""The values of one chat call: what goes out, what comes back, and what each try looked like.

These types are the contract between the agent loops (workflows, activities) and the model
client; they are plain dataclasses so they cross Temporal unchanged and land in the ledger's
model-call table as they are. This module also reads both answer shapes of the OpenAI chat API as
vLLM sends them: a whole ``chat.completion`` object, and a stream of ``chat.completion.chunk``
deltas that :class:`StreamAssembler` puts back together (content, reasoning, tool calls split
over many chunks by ``index``, usage in the last chunk).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kswarm.llm.errors import MalformedResponse, error_for_status

__all__ = [
    "Attempt",
    "ChatRequest",
    "ChatResult",
    "Completion",
    "StreamAssembler",
    "check_tool_arguments",
    "parse_completion",
]


@dataclass(kw_only=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    """OpenAI chat messages: ``{"role": ..., "content": ...}``, tool calls and results included."""
    model: str = ""
    """Model to ask for; empty means the pool's model."""
    tools: list[dict[str, Any]] | None = None
    """OpenAI tool definitions (``{"type": "function", "function": {...}}``)."""
    tool_choice: str | dict[str, Any] | None = None
    """``auto``, ``none``, ``required`` or a named function; ``None`` leaves the server default."""
    max_tokens: int | None = None
    """Cap on generated tokens; ``None`` leaves the server default."""
    temperature: float | None = None
    """Sampling temperature; ``None`` leaves the server default."""
    stream: bool = False
    """Stream the answer (needed for time to first token); the result is the same either way."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra top-level fields sent as they are (vLLM sampling options, simulator faults)."""
    prefix_key: str | None = None
    """Routing key: calls sharing a long prompt prefix should share it. For swarms use
    ``"<job>/<agent>"``: the job's prefix is cached on two replicas, each agent sticks to one."""
    check_arguments: bool = True
    """Fail the call (:class:`MalformedResponse`, retried) when a tool call's arguments are not
    a JSON object; ``False`` returns them as the model wrote them, for a caller that answers
    the model with a tool error instead (the agent loops do)."""
    replica_hint: str | None = None
    """Base URL of the replica that answered this conversation's previous call, whose prefix
    cache holds the conversation so far. ``prefix-affinity`` keeps the call there while that
    replica is in rotation, has a free slot and stays under the sticky load bound
    (``RouterSettings.sticky_bound_factor``); other policies ignore it."""

    def body(self, default_model: str) -> dict[str, Any]:
        """The JSON body of ``POST /v1/chat/completions``."""
        body: dict[str, Any] = {"model": self.model or default_model, "messages": self.messages}
        if self.tools is not None:
            body["tools"] = self.tools
        if self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body


@dataclass(kw_only=True)
class Attempt:
    number: int
    """1 for the first try."""
    replica: str | None
    """Base URL of the replica tried; ``None`` when the router had none to offer."""
    outcome: str
    """``ok``, ``http_429``, ``http_503``, ``http_500`` (any 5xx), ``timeout``,
    ``connect_error``, ``transport_error``, ``bad_request``, ``model_not_served``,
    ``malformed_response``, ``no_replica``."""
    http_status: int | None = None
    """HTTP status of the answer, when one came."""
    error: str | None = None
    """What went wrong, for people; ``None`` when the outcome is ``ok``."""
    started_at: float = 0.0
    """Wall-clock start, seconds since the epoch."""
    latency_seconds: float = 0.0
    """From sending the request to the last byte (or the failure)."""
    ttft_seconds: float | None = None
    """Time to the first content or tool-call delta (streaming only)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    model_seconds: float | None = None
    """Modelled seconds the simulator reports for the answer; ``None`` on vLLM."""
    prompt_token_ids: list[int] | None = None
    """Token ids of the prompt, when the server returned them (``return_token_ids``)."""
    completion_token_ids: list[int] | None = None
    """Token ids the model generated, when the server returned them."""
    logprobs: list[float] | None = None
    """Log-probability of each generated token, when the server returned them."""


@dataclass(kw_only=True)
class ChatResult:
    message: dict[str, Any]
    """The assistant message as the server sent it: ``role``, ``content``, ``tool_calls``
    (``arguments`` left as the JSON string the model wrote, checked to parse)."""
    finish_reason: str | None
    """``stop``, ``tool_calls``, ``length``, ..."""
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    """Prompt tokens served from the prefix cache (``usage.prompt_tokens_details``), else 0."""
    ttft_seconds: float | None
    """Time to first token of the successful attempt (streaming only)."""
    latency_seconds: float
    """Of the successful attempt; the call's total time is in ``attempts``."""
    replica: str
    """Base URL of the replica that answered."""
    attempts: list[Attempt]
    """Every try, the successful one last."""
    model_seconds: float | None = None
    """Modelled seconds reported by the simulator (``kswarm.model_seconds``); ``None`` on vLLM."""
    pool: str = ""
    model: str = ""
    """Model that answered, as the server names it."""
    response_id: str = ""

    @property
    def content(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


@dataclass(kw_only=True)
class Completion:
    """One parsed answer, before the client adds timings and attempts."""

    message: dict[str, Any]
    finish_reason: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    model: str = ""
    response_id: str = ""
    model_seconds: float | None = None
    ttft_seconds: float | None = None
    prompt_token_ids: list[int] | None = None
    """Token ids of the prompt, when the server returned them (``return_token_ids``)."""
    completion_token_ids: list[int] | None = None
    """Token ids the model generated, when the server returned them."""
    logprobs: list[float] | None = None
    """Log-probability of each generated token, when the server returned them."""


def check_tool_arguments(message: dict[str, Any]) -> None:
    """Raise :class:`MalformedResponse` unless every tool call's arguments is a JSON object."""
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MalformedResponse("a tool call has no function name", raw=json.dumps(call))
        raw = function.get("arguments")
        if not isinstance(raw, str):
            raise MalformedResponse(
                f"tool call {function['name']!r}: arguments is not a JSON string",
                raw=json.dumps(raw),
            )
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            raise MalformedResponse(
                f"tool call {function['name']!r}: arguments are not valid JSON ({e})", raw=raw
            ) from None
        if not isinstance(parsed, dict):
            raise MalformedResponse(
                f"tool call {function['name']!r}: arguments are not a JSON object", raw=raw
            )


def _usage(completion: Completion, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    completion.input_tokens = int(usage.get("prompt_tokens") or 0)
    completion.output_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        completion.cached_tokens = int(details.get("cached_tokens") or 0)


def _extra(completion: Completion, data: dict[str, Any]) -> None:
    extra = data.get("kswarm")
    if isinstance(extra, dict) and isinstance(extra.get("model_seconds"), int | float):
        completion.model_seconds = float(extra["model_seconds"])


def parse_completion(raw: str, *, check_arguments: bool = True) -> Completion:
    """Read a non-streaming ``chat.completion`` body (see ``ChatRequest.check_arguments``)."""
    try:
        data = json.loads(raw)
        choice = data["choices"][0]
        message = choice["message"]
        if not isinstance(message, dict):
            raise TypeError("message is not an object")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise MalformedResponse(f"not a chat completion: {e}", raw=raw[:2000]) from None
    completion = Completion(
        message=message,
        finish_reason=choice.get("finish_reason"),
        model=str(data.get("model") or ""),
        response_id=str(data.get("id") or ""),
    )
    _usage(completion, data.get("usage"))
    _extra(completion, data)
    _token_ids(completion, data, choice)
    if check_arguments:
        check_tool_arguments(message)
    return completion


def _ints(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return list(value)
    return None


def _token_ids(completion: Completion, data: dict[str, Any], choice: dict[str, Any]) -> None:
    """vLLM's ``prompt_token_ids`` and ``choices[0].token_ids`` (``return_token_ids``) and the
    per-token ``logprobs.content[].logprob`` (``logprobs``), when present; llama.cpp's answer
    token ids from ``logprobs.content[].id`` (its prompt's ids come from the client, see
    :meth:`~kswarm.llm.client.LLMClient._prompt_token_ids`)."""
    completion.prompt_token_ids = _ints(data.get("prompt_token_ids"))
    completion.completion_token_ids = _ints(choice.get("token_ids"))
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if isinstance(content, list):
        values = [c.get("logprob") for c in content if isinstance(c, dict)]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if numbers and len(numbers) == len(content):
            completion.logprobs = numbers
        if completion.completion_token_ids is None:
            # llama.cpp gives each answer token's id beside its log-probability.
            ids = _ints([c.get("id") for c in content if isinstance(c, dict)])
            if ids and len(ids) == len(content):
                completion.completion_token_ids = ids


class StreamAssembler:
    """Rebuilds a message from ``chat.completion.chunk`` objects, fed in arrival order.

    ``started`` and the ``now`` given to :meth:`feed` are ``time.perf_counter()`` readings; the
    first chunk that carries content, reasoning or a tool call sets ``ttft_seconds``.
    """

    def __init__(self, started: float) -> None:
        self._started = started
        self._role = "assistant"
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._refusal: list[str] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self._arguments: dict[int, list[str]] = {}
        self.done = False
        self.completion = Completion(message={}, finish_reason=None)

    def feed_line(self, data: str, now: float) -> None:
        """One SSE ``data:`` payload: a JSON chunk, or ``[DONE]``."""
        if data.strip() == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise MalformedResponse("a stream chunk is not JSON", raw=data[:2000]) from None
        if not isinstance(chunk, dict):
            raise MalformedResponse("a stream chunk is not an object", raw=data[:2000])
        if "error" in chunk and not chunk.get("choices"):
            # vLLM reports a failure after the 200 header as an error object in the stream.
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            code = error.get("code")
            raise error_for_status(code if isinstance(code, int) else 500, data)
        self.feed(chunk, now)

    def feed(self, chunk: dict[str, Any], now: float) -> None:
        c = self.completion
        c.response_id = c.response_id or str(chunk.get("id") or "")
        c.model = c.model or str(chunk.get("model") or "")
        _usage(c, chunk.get("usage"))
        _extra(c, chunk)
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if self._take(delta) and c.ttft_seconds is None:
                c.ttft_seconds = now - self._started
            if choice.get("finish_reason") is not None:
                c.finish_reason = choice["finish_reason"]

    def _take(self, delta: dict[str, Any]) -> bool:
        """Merge one delta; whether it carried generated output."""
        produced = False
        if isinstance(delta.get("role"), str):
            self._role = delta["role"]
        if delta.get("content"):
            self._content.append(delta["content"])
            produced = True
        if delta.get("refusal"):
            self._refusal.append(str(delta["refusal"]))
            produced = True
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            self._reasoning.append(reasoning)
            produced = True
        for part in delta.get("tool_calls") or []:
            produced = True
            index = int(part.get("index", len(self._tool_calls)))
            call = self._tool_calls.setdefault(
                index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if part.get("id"):
                call["id"] = part["id"]
            if part.get("type"):
                call["type"] = part["type"]
            function = part.get("function") or {}
            if function.get("name"):
                call["function"]["name"] += function["name"]
            if function.get("arguments"):
                self._arguments.setdefault(index, []).append(function["arguments"])
        return produced

    def result(self, *, check_arguments: bool = True) -> Completion:
        """The assembled answer; tool-call arguments are checked to be JSON objects unless
        ``check_arguments`` is false."""
        message: dict[str, Any] = {
            "role": self._role,
            "content": "".join(self._content) if self._content else None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._refusal:
            message["refusal"] = "".join(self._refusal)
        calls = []
        for index in sorted(self._tool_calls):
            call = self._tool_calls[index]
            call["function"]["arguments"] = "".join(self._arguments.get(index, []))
            calls.append(call)
        if calls:
            message["tool_calls"] = calls
        self.completion.message = message
        if check_arguments:
            check_tool_arguments(message)
        return self.completion
