"""The OpenAI chat protocol as vLLM speaks it, for the simulator: checking bodies, shaping answers.

A request body is checked the way vLLM checks it (messages, tools, ``tool_choice``, token limits)
so a client that passes the simulator does not fail against a real server; every refusal is an
:class:`InvalidRequest`, answered 400. An answer is the behaviour's assistant message, completed
with what vLLM's hermes tool parser would add (tool-call ids, ``type``, ``finish_reason``) and
priced in output tokens; it renders as one ``chat.completion`` object or as the ordered deltas of
a stream (content in pieces; per tool call a header with id and name, then argument pieces).
"""

from __future__ import annotations

import json
import random
import time
import zlib
from dataclasses import dataclass
from typing import Any

from kswarm.sim.config import SimConfig

__all__ = [
    "Answer",
    "ChatCall",
    "InvalidRequest",
    "add_token_ids",
    "completion_id",
    "parse_body",
    "spread",
]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
CONTENT_PIECES = 8
"""A streamed content is sent in at most this many chunks (vLLM sends one per token; fewer
chunks keep the simulator's own cost small, and clients assemble them the same way)."""
ARGUMENT_PIECES = 4
_HERMES_OVERHEAD_CHARS = len("<tool_call>\n\n</tool_call>")


class InvalidRequest(ValueError):
    """The body is not a valid chat completion request; the message says why (HTTP 400)."""


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as e:
        raise InvalidRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def completion_id() -> str:
    """A unique ``chatcmpl-`` id (not from the seeded rng: ids differ between retries)."""
    return f"chatcmpl-{random.getrandbits(128):032x}"


def spread(pieces: int, tokens: int) -> list[int]:
    """Decode-token offsets at which to send ``pieces`` chunks evenly over ``tokens`` tokens."""
    return [round((i + 1) * tokens / pieces) for i in range(pieces)] if pieces > 0 else []


def _tool_names(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list")
    names = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
        ):
            raise InvalidRequest(f"tools[{i}]: must be {{type: function, function: {{name, ...}}}}")
        names.append(function["name"])
    return names


@dataclass(frozen=True, kw_only=True)
class ChatCall:
    """A checked request: what the engine and the answer need from the body."""

    model: str
    messages_json: str
    prompt_text: str
    """What the prefix cache sees: tools, then messages, serialized (prefix-stable)."""
    prompt_tokens: int
    max_tokens: int | None
    tool_choice: Any
    stream: bool
    include_usage: bool

    @classmethod
    def from_body(cls, body: dict[str, Any], config: SimConfig) -> ChatCall:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages: must be a non-empty list")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise InvalidRequest(f"messages[{i}]: must be an object with a valid role")
        tools = body.get("tools")
        names = _tool_names(tools) if tools is not None else []
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name not in names:
                raise InvalidRequest(f"tool_choice: function {name!r} is not among the tools")
        elif choice not in (None, "none", "auto", "required"):
            raise InvalidRequest("tool_choice: must be none, auto, required or a named function")
        if choice not in (None, "none") and not names:
            raise InvalidRequest("When using `tool_choice`, `tools` must be set.")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            raise InvalidRequest("max_tokens: must be an integer >= 1")
        if body.get("n", 1) != 1:
            raise InvalidRequest("n: the simulator answers one choice (n=1)")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise InvalidRequest("stream: must be a boolean")
        options = body.get("stream_options") or {}
        if not isinstance(options, dict):
            raise InvalidRequest("stream_options: must be an object")
        messages_json = json.dumps(messages)
        prompt_text = (json.dumps(tools) if tools else "") + messages_json
        prompt_tokens = config.tokens(len(prompt_text))
        if prompt_tokens + (max_tokens or 0) > config.max_model_len:
            raise InvalidRequest(
                f"This model's maximum context length is {config.max_model_len} tokens. However, "
                f"you requested {prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in "
                f"the messages, {max_tokens or 0} in the completion)."
            )
        return cls(
            model=str(body.get("model") or config.model),
            messages_json=messages_json,
            prompt_text=prompt_text,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            tool_choice=choice,
            stream=stream,
            include_usage=bool(options.get("include_usage")),
        )


@dataclass(kw_only=True)
class Answer:
    content: str | None
    tool_calls: list[dict[str, Any]]
    refusal: str | None = None
    """OpenAI's ``message.refusal``: the model declines the request and says why."""
    output_tokens: int
    finish_reason: str

    @classmethod
    def build(
        cls, message: dict[str, Any], chat: ChatCall, config: SimConfig, rng: random.Random
    ) -> Answer:
        """Complete a behaviour's message as vLLM would, and price it in output tokens."""
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            content = json.dumps(content)
        calls: list[dict[str, Any]] = []
        if chat.tool_choice != "none":
            for call in message.get("tool_calls") or []:
                function = dict(call.get("function") or {})
                arguments = function.get("arguments", "{}")
                calls.append(
                    {
                        "id": call.get("id") or f"chatcmpl-tool-{rng.getrandbits(64):016x}",
                        "type": "function",
                        "function": {
                            "name": str(function.get("name", "")),
                            "arguments": arguments
                            if isinstance(arguments, str)
                            else json.dumps(arguments),
                        },
                    }
                )
        chars = len(content or "") + sum(
            len(c["function"]["name"])
            + len(c["function"]["arguments"])
            + 24
            + _HERMES_OVERHEAD_CHARS
            for c in calls
        )
        tokens = message.get("kswarm_output_tokens")
        output_tokens = int(tokens) if isinstance(tokens, int) else max(1, config.tokens(chars))
        finish = "tool_calls" if calls else "stop"
        if chat.max_tokens is not None and output_tokens > chat.max_tokens:
            output_tokens = chat.max_tokens
            content = (content or "")[: output_tokens * config.chars_per_token]
            calls, finish = [], "length"
        refusal = message.get("refusal")
        return cls(
            content=content,
            tool_calls=calls,
            refusal=str(refusal) if refusal else None,
            output_tokens=output_tokens,
            finish_reason=finish,
        )

    @property
    def reason(self) -> str:
        """``finished_reason`` as vLLM's metrics count it: ``length`` or ``stop``."""
        return "length" if self.finish_reason == "length" else "stop"

    def usage(self, cached_tokens: int, prompt_tokens: int) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + self.output_tokens,
            "completion_tokens": self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        }

    def completion(
        self, chat: ChatCall, cached_tokens: int, prompt_tokens: int, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """The non-streaming ``chat.completion`` object."""
        message = {
            "role": "assistant",
            "reasoning_content": None,
            "content": self.content,
            "tool_calls": self.tool_calls,
        }
        if self.refusal:
            message["refusal"] = self.refusal
        return {
            "id": completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                    "stop_reason": None,
                }
            ],
            "usage": self.usage(cached_tokens, prompt_tokens),
            "prompt_logprobs": None,
            "kswarm": extra,
        }

    def stream_deltas(self) -> list[dict[str, Any]]:
        """The deltas after the role chunk, in order; never empty."""
        deltas: list[dict[str, Any]] = [
            {"content": piece} for piece in _pieces(self.content or "", CONTENT_PIECES)
        ]
        if self.refusal:
            deltas.append({"refusal": self.refusal})
        for index, call in enumerate(self.tool_calls):
            function = call["function"]
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": function["name"]},
                        }
                    ]
                }
            )
            for piece in _pieces(function["arguments"], ARGUMENT_PIECES):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return deltas or [{"content": ""}]


def _pieces(text: str, most: int) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // most)
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---------------------------------------------------------------------- token ids

_VOCAB = 50_000


def _word_ids(text: str) -> list[int]:
    return [100 + zlib.crc32(w.encode()) % _VOCAB for w in text.split()]


def _message_ids(message: dict[str, Any]) -> list[int]:
    """A message's ids under the simulator's stand-in tokenizer: one id per word of its role,
    content and tool calls. Not a real vocabulary; its one property is that a conversation's
    ids only grow at the end, as a chat template's do."""
    parts = [f"<|{message.get('role')}|>", str(message.get("content") or "")]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts += ["<tool_call>", str(function.get("name", "")), str(function.get("arguments", ""))]
    return _word_ids(" ".join(parts))


def add_token_ids(completion: dict[str, Any], body: dict[str, Any], answer: Answer) -> None:
    """Add vLLM's ``prompt_token_ids``, ``choices[0].token_ids`` and per-token ``logprobs``
    (as ``return_token_ids`` and ``logprobs`` ask) to a non-streaming completion."""
    tools = body.get("tools")
    prompt = _word_ids(json.dumps(tools)) if tools else []
    for message in body.get("messages") or []:
        prompt += _message_ids(message)
    generated = _message_ids(
        {"role": "assistant", "content": answer.content, "tool_calls": answer.tool_calls}
    )
    choice = completion["choices"][0]
    completion["prompt_token_ids"] = prompt
    choice["token_ids"] = generated
    choice["logprobs"] = {
        "content": [{"token": f"<{i}>", "logprob": -(i % 997) / 1000} for i in generated]
    }
