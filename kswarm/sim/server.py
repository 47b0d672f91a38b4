"""The simulator's HTTP face: vLLM's OpenAI-compatible API, answered from the cost model.

Clients cannot tell it from ``vllm serve MODEL --enable-auto-tool-choice --tool-call-parser
hermes``: the same routes (``POST /v1/chat/completions``, ``GET /v1/models``, ``/health``,
``/metrics``), the same answer objects (tool calls with ``finish_reason: "tool_calls"``, usage
with ``prompt_tokens_details.cached_tokens``, SSE chunks with tool-call deltas and usage in the
last chunk), the same errors (404 ``NotFoundError`` for an unknown model, 400 for a malformed
body). One extra top-level field, ``"kswarm": {"model_seconds", "replica", "wall_seconds"}``,
tells the caller what the request cost in modelled (scaled) seconds.

With ``api_key`` set (``kswarm sim --api-key KEY``, or ``KSWARM_SIM_API_KEY``), it checks keys as
``vllm serve --api-key`` does: a ``/v1/*`` request without ``Authorization: Bearer KEY`` gets
401, with an OpenAI-style error body; ``/health`` and ``/metrics`` stay open.

Faults come from the configured rates or, for one request, from an extra body field
``kswarm_fault``: ``"503"``, ``"500"``, ``"429"``, ``"hang"`` or ``"slow"``, optionally
``"503:2"`` to fault only the first two times this replica sees the same messages (so a test can
watch a retry succeed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from kswarm.sim import protocol
from kswarm.sim.config import FAULT_KINDS, SimConfig
from kswarm.sim.engine import Engine
from kswarm.sim.scripted import scripted_behaviour

__all__ = ["SimService"]

log = logging.getLogger(__name__)

_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """An error in vLLM's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "Error"),
            "param": None,
            "code": status,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class SimService:
    """One replica's state and request handlers; :mod:`kswarm.sim.serving` serves it."""

    def __init__(self, config: SimConfig, *, replica_id: str) -> None:
        self.replica_id = replica_id
        self.config = config
        self.engine = Engine(config)
        self.healthy = True
        """``False`` makes ``/health`` answer 503 (tests of ejection and recovery)."""
        self.closing = asyncio.Event()
        self._behaviour = config.behaviour or scripted_behaviour
        self._faults = random.Random(f"faults:{config.seed}:{replica_id}")
        self._forced: dict[str, int] = {}

    def reconfigure(self, config: SimConfig) -> None:
        """Change faults or behaviour while serving; the engine keeps its own cost model."""
        self.config = config
        self._behaviour = config.behaviour or scripted_behaviour

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self.authorize])
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def authorize(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """vLLM's ``--api-key`` check, read per request (so :meth:`reconfigure` rotates it)."""
        key = self.config.api_key
        if key is None or not request.path.startswith("/v1") or request.method == "OPTIONS":
            return await handler(request)
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return error_response(
                401, "Missing API key: send the header Authorization: Bearer <API key>."
            )
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return error_response(401, "Incorrect API key provided.")
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def models(self, request: web.Request) -> web.Response:
        model = self.config.model
        created = int(time.time())
        card = {
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": model,
            "parent": None,
            "max_model_len": self.config.max_model_len,
        }
        return web.json_response({"object": "list", "data": [card]})

    async def metrics(self, request: web.Request) -> web.Response:
        running, waiting, kv = self.engine.sample()
        text = self.engine.metrics.render(running=running, waiting=waiting, kv_cache_usage=kv)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    def _fault(self, body: dict[str, Any], messages_json: str) -> str | None:
        forced = body.pop("kswarm_fault", None)
        if forced is not None:
            kind, _, times = str(forced).partition(":")
            if kind not in FAULT_KINDS or not (times == "" or times.isdigit()):
                raise protocol.InvalidRequest(
                    f"kswarm_fault: must be one of {', '.join(FAULT_KINDS)}, optionally with "
                    f"':<times>', got {forced!r}"
                )
            if not times:
                return kind
            digest = hashlib.blake2b(messages_json.encode(), digest_size=16).hexdigest()
            key = f"{kind}:{digest}"
            seen = self._forced.get(key, 0)
            self._forced[key] = seen + 1
            return kind if seen < int(times) else None
        cfg = self.config
        draw = self._faults.random()
        for kind, rate in (
            ("503", cfg.fail_503_rate),
            ("500", cfg.fail_500_rate),
            ("429", cfg.fail_429_rate),
            ("hang", cfg.hang_rate),
            ("slow", cfg.slow_rate),
        ):
            if draw < rate:
                return kind
            draw -= rate
        return None

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        received = time.perf_counter()
        try:
            body = protocol.parse_body(await request.read())
            model = body.get("model") or self.config.model
            if model != self.config.model:
                return error_response(404, f"The model `{model}` does not exist.")
            chat = protocol.ChatCall.from_body(body, self.config)
            fault = self._fault(body, chat.messages_json)
        except protocol.InvalidRequest as e:
            return error_response(400, str(e))
        if fault in ("503", "500", "429", "hang"):
            return await self._fail(fault)

        digest = hashlib.blake2b(chat.messages_json.encode(), digest_size=8).digest()
        rng = random.Random(self.config.seed * (1 << 64) + int.from_bytes(digest, "big"))
        try:
            answer = protocol.Answer.build(self._behaviour(body, rng), chat, self.config, rng)
        except Exception as e:  # a behaviour bug is the simulated server's 500, logged
            log.exception("behaviour failed replica=%s", self.replica_id)
            return error_response(500, f"behaviour failed: {type(e).__name__}: {e}")
        if chat.stream:
            return await self._stream(request, chat, answer, received, fault == "slow")
        sim = self.engine.submit(chat.prompt_text, answer.output_tokens, reason=answer.reason)
        try:
            await sim.done
            model_seconds = await self._stretch(sim.model_seconds, fault == "slow")
        except asyncio.CancelledError:
            self.engine.abort(sim)
            raise
        extra = self._extra(model_seconds, received)
        completion = answer.completion(chat, sim.cached_tokens, sim.prompt_tokens, extra)
        if body.get("return_token_ids") or body.get("logprobs"):
            protocol.add_token_ids(completion, body, answer)
        return web.json_response(completion)

    async def _fail(self, fault: str) -> web.Response:
        cfg = self.config
        if fault == "503":
            after = cfg.retry_after_seconds
            headers = {"Retry-After": _seconds(after)} if after is not None else None
            return error_response(503, "The server is overloaded (simulated).", headers=headers)
        if fault == "429":
            headers = {"Retry-After": _seconds(cfg.rate_limit_retry_after_seconds)}
            return error_response(429, "Too many requests (simulated).", headers=headers)
        if fault == "hang":
            try:
                await asyncio.wait_for(self.closing.wait(), cfg.hang_cap_seconds)
            except TimeoutError:
                return error_response(504, "The request hung (simulated).")
            return error_response(503, "The server is shutting down.")
        return error_response(500, "Internal server error (simulated).")

    async def _stretch(self, model_seconds: float, slow: bool) -> float:
        """The scaled modelled seconds, after waiting out a slow tail's extra time."""
        scaled = model_seconds * self.engine.config.time_scale
        if slow:
            extra = scaled * (self.config.slow_factor - 1)
            await asyncio.sleep(extra)
            scaled += extra
        return scaled

    def _extra(self, model_seconds: float, received: float) -> dict[str, Any]:
        return {
            "model_seconds": model_seconds,
            "replica": self.replica_id,
            "wall_seconds": time.perf_counter() - received,
        }

    async def _stream(
        self,
        request: web.Request,
        chat: protocol.ChatCall,
        answer: protocol.Answer,
        received: float,
        slow: bool,
    ) -> web.StreamResponse:
        chunks = answer.stream_deltas()
        offsets = protocol.spread(len(chunks) - 1, answer.output_tokens - 1)
        sim = self.engine.submit(
            chat.prompt_text, answer.output_tokens, milestones=offsets, reason=answer.reason
        )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        stream_id = protocol.completion_id()
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": stream_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model,
                "choices": choices,
                **extra,
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

        try:
            await response.prepare(request)
            await sim.first_token
            await response.write(event(delta({"role": "assistant", "content": ""})))
            await response.write(event(delta(chunks[0])))
            for (_, reached), chunk in zip(sim.milestones, chunks[1:], strict=True):
                await reached
                await response.write(event(delta(chunk)))
            await sim.done
            model_seconds = await self._stretch(sim.model_seconds, slow)
        except (asyncio.CancelledError, ConnectionResetError):
            self.engine.abort(sim)
            raise
        usage = answer.usage(sim.cached_tokens, sim.prompt_tokens)
        extra = {"kswarm": self._extra(model_seconds, received)}
        if chat.include_usage:
            await response.write(event(delta({}, answer.finish_reason)))
            await response.write(event([], usage=usage, **extra))
        else:
            await response.write(event(delta({}, answer.finish_reason), **extra))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
