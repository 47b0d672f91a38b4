"""The model client: one chat call to a pool, with routing, retries and an account of every try.

A swarm makes thousands of calls a minute from one worker, so the process keeps ONE
``httpx.AsyncClient`` (HTTP/1.1 keep-alive, room for about a thousand connections) and one
:class:`~kswarm.llm.router.Router` per pool. :func:`chat` is the entry point the activities use;
:class:`LLMClient` is the same thing as an object, for tests and for benchmarks that want their
own connection pool.

A call retries what can succeed later (429, 503, other 5xx, timeouts, refused connections, tool
calls whose arguments are not JSON) with jittered exponential backoff that honours
``Retry-After``, on another replica when the router has one; it never retries a 400 or an
unknown model. Every attempt is reported to ``on_attempt`` as it ends (the ledger records them)
and kept in the result or in the raised error. Nothing here is simulator-specific: against
``vllm serve ... --enable-auto-tool-choice --tool-call-parser hermes`` or any OpenAI-compatible
endpoint it behaves the same; only ``model_seconds`` stays ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from kswarm.llm.chats import (
    Attempt,
    ChatRequest,
    ChatResult,
    Completion,
    StreamAssembler,
    parse_completion,
)
from kswarm.llm.errors import (
    BadRequest,
    LLMError,
    LLMTimeout,
    MalformedResponse,
    ModelNotServed,
    Overloaded,
    RateLimited,
    ReplicaUnavailable,
    error_for_status,
)
from kswarm.llm.pacing import DEFAULT_RETRY_POLICY, RateLimiter, RetryPolicy, parse_retry_after
from kswarm.llm.pools import PoolConfig
from kswarm.llm.replicas import DEFAULT_ROUTER_SETTINGS, RouterSettings
from kswarm.llm.router import Router
from kswarm.llm.transport import AiohttpTransport

__all__ = [
    "DEFAULT_CLIENT_SETTINGS",
    "AttemptHook",
    "ClientSettings",
    "LLMClient",
    "chat",
    "close_default_client",
    "default_client",
    "http_client",
]

AttemptHook = Callable[[Attempt], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    max_connections: int = 1024
    """Connections the process may hold open, over all replicas of all pools."""
    max_keepalive_connections: int = 1024
    """Idle connections kept for reuse."""
    keepalive_expiry_seconds: float = 30.0
    """How long an idle connection is kept."""
    trust_env: bool = False
    """Read proxy and TLS settings from the environment (``HTTPS_PROXY``, ``SSL_CERT_FILE``)."""
    transport: str = "aiohttp"
    """``aiohttp``: httpx over aiohttp's pool (scales to ~1,000 calls in flight); ``httpcore``:
    httpx's own pool, whose cost grows with the square of the calls in flight."""


DEFAULT_CLIENT_SETTINGS = ClientSettings()


USER_AGENT = "kswarm"


def _aiohttp_transport(settings: ClientSettings) -> AiohttpTransport | None:
    if settings.transport != "aiohttp":
        return None
    return AiohttpTransport(
        max_connections=settings.max_connections,
        keepalive_expiry=settings.keepalive_expiry_seconds,
        trust_env=settings.trust_env,
    )


def http_client(
    settings: ClientSettings = DEFAULT_CLIENT_SETTINGS,
    *,
    transport: AiohttpTransport | None = None,
) -> httpx.AsyncClient:
    """The shared client; its bytes go through aiohttp's pool (see :mod:`kswarm.llm.transport`),
    ``transport`` when given."""
    if transport is None:
        transport = _aiohttp_transport(settings)
    return httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_keepalive_connections,
            keepalive_expiry=settings.keepalive_expiry_seconds,
        ),
        transport=transport,
        trust_env=settings.trust_env,
        headers={"User-Agent": USER_AGENT},
    )


def _outcome(error: LLMError) -> str:
    if isinstance(error, ModelNotServed):
        return "model_not_served"
    if isinstance(error, BadRequest) and error.status in (400, 422):
        return "bad_request"
    if isinstance(error, MalformedResponse):
        return "malformed_response"
    if error.status is not None:
        return f"http_{error.status}"
    if isinstance(error, LLMTimeout):
        return "timeout"
    return "transport_error"


class LLMClient:
    """Chat calls to model pools over one shared connection pool."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None = None,
        settings: ClientSettings = DEFAULT_CLIENT_SETTINGS,
        router_settings: RouterSettings = DEFAULT_ROUTER_SETTINGS,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        # A client of our own sends non-streamed chat calls straight through its aiohttp
        # transport (see ``kswarm.llm.transport``); a client given to us is used as it is.
        self._direct = _aiohttp_transport(settings) if http is None else None
        self.http = http or http_client(settings, transport=self._direct)
        self._owns_http = http is None
        self.router_settings = router_settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._routers: dict[str, Router] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._windows: dict[str, int | None] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def router(self, pool: PoolConfig) -> Router:
        """The router of ``pool``; a changed config for the same name gets a fresh one."""
        router = self._routers.get(pool.name)
        if router is None or router.pool != pool:
            if router is not None:
                closing = asyncio.get_running_loop().create_task(router.aclose())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            router = Router(pool, http=self.http, settings=self.router_settings, clock=self._clock)
            self._routers[pool.name] = router
            self._limiters.pop(pool.name, None)
        return router

    async def context_window(self, pool: PoolConfig) -> int | None:
        """The pool's context window: ``contextWindow`` when the pool gives it, else what its
        first replica says (vLLM's ``max_model_len`` in ``/v1/models``, llama.cpp's slot
        ``n_ctx`` in ``/props``), asked once per pool; ``None`` when neither says."""
        if pool.context_window is not None:
            return pool.context_window
        base = pool.replicas[0].rstrip("/")
        key = f"{pool.name} {base}"
        if key in self._windows:
            return self._windows[key]
        window: int | None = None
        headers = {"Authorization": f"Bearer {pool.api_key}"} if pool.api_key else {}
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, KeyError):
            models = (await self.http.get(f"{base}/v1/models", headers=headers, timeout=10)).json()
            lengths = [m.get("max_model_len") for m in models.get("data") or []]
            window = next((int(n) for n in lengths if isinstance(n, int) and n > 0), None)
            if window is None:
                props = (await self.http.get(f"{base}/props", headers=headers, timeout=10)).json()
                n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
                window = int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None
        self._windows[key] = window
        return window

    async def _pace(self, pool: PoolConfig) -> None:
        if pool.requests_per_second is None:
            return
        limiter = self._limiters.get(pool.name)
        if limiter is None:
            limiter = self._limiters[pool.name] = RateLimiter(pool.requests_per_second)
        await limiter.acquire()

    async def chat(
        self,
        pool: PoolConfig,
        request: ChatRequest,
        *,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_attempt: AttemptHook | None = None,
    ) -> ChatResult:
        """Send ``request`` to ``pool`` until it succeeds, fails for good, or attempts run out."""
        router = self.router(pool)
        content = json.dumps(request.body(pool.model)).encode()
        attempts: list[Attempt] = []
        failed: set[str] = set()
        for number in range(1, retry.max_attempts + 1):
            await self._pace(pool)
            started_at = time.time()
            try:
                replica = await router.acquire(
                    request.prefix_key, avoid=failed, hint=request.replica_hint
                )
            except ReplicaUnavailable as e:
                attempt = Attempt(
                    number=number,
                    replica=None,
                    outcome="no_replica",
                    error=str(e),
                    started_at=started_at,
                )
                error: LLMError = e
            else:
                try:
                    attempt, result = await self._attempt(pool, replica, request, content, number)
                except BaseException:
                    router.release(replica, "cancelled")
                    raise
                router.release(replica, attempt.outcome, attempt.http_status)
                if isinstance(result, Completion):
                    attempts.append(attempt)
                    if on_attempt is not None:
                        await on_attempt(attempt)
                    return _result(pool, replica, result, attempt, attempts)
                error = result
                failed.add(replica)
            attempts.append(attempt)
            if on_attempt is not None:
                await on_attempt(attempt)
            if not error.retryable or number == retry.max_attempts:
                error.attempts = attempts
                raise error
            retry_after = error.retry_after if isinstance(error, RateLimited | Overloaded) else None
            await asyncio.sleep(retry.delay(number, retry_after=retry_after, rng=self._rng))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _attempt(
        self, pool: PoolConfig, replica: str, request: ChatRequest, content: bytes, number: int
    ) -> tuple[Attempt, Completion | LLMError]:
        """One try against one replica; never raises an :class:`LLMError`, returns it."""
        url = replica.rstrip("/") + "/v1/chat/completions"
        headers = {"Content-Type": "application/json"}
        direct = self._direct if not request.stream and not self.http.is_closed else None
        if direct is not None:
            headers["User-Agent"] = USER_AGENT
        if pool.api_key:
            headers["Authorization"] = f"Bearer {pool.api_key}"
        timeout = httpx.Timeout(pool.request_timeout_seconds, connect=pool.connect_timeout_seconds)
        attempt = Attempt(number=number, replica=replica, outcome="ok", started_at=time.time())
        t0 = time.perf_counter()
        outcome: Completion | LLMError
        try:
            async with asyncio.timeout(pool.request_timeout_seconds):
                if request.stream:
                    outcome = await self._stream(
                        url, headers, content, timeout, t0, request.check_arguments
                    )
                elif direct is not None:
                    raw = await direct.post(url, content=content, headers=headers, timeouts=timeout)
                    text = raw.text
                    _raise_for(raw.status, text, raw.headers.get("retry-after"))
                    outcome = parse_completion(text, check_arguments=request.check_arguments)
                else:
                    response = await self.http.post(
                        url, content=content, headers=headers, timeout=timeout
                    )
                    _raise_for_status(response)
                    outcome = parse_completion(
                        response.text, check_arguments=request.check_arguments
                    )
        except LLMError as e:
            outcome = e
        except (TimeoutError, httpx.TimeoutException) as e:
            if isinstance(e, httpx.ConnectTimeout):
                outcome = ReplicaUnavailable(f"connect timeout: {e}")
                attempt.outcome = "connect_error"
            else:
                outcome = LLMTimeout(f"no answer within {pool.request_timeout_seconds:g} s")
            outcome.__cause__ = e
        except httpx.TransportError as e:
            what = "connection failed" if isinstance(e, httpx.ConnectError) else "transport failed"
            outcome = ReplicaUnavailable(f"{what}: {e or type(e).__name__}")
            outcome.__cause__ = e
            if isinstance(e, httpx.ConnectError):
                attempt.outcome = "connect_error"
        attempt.latency_seconds = time.perf_counter() - t0
        if isinstance(outcome, Completion) and pool.return_token_ids:
            if outcome.prompt_token_ids is None:  # after the latency: not the model's time
                outcome.prompt_token_ids = await self._prompt_token_ids(replica, headers, content)
        if isinstance(outcome, Completion):
            attempt.ttft_seconds = outcome.ttft_seconds
            attempt.input_tokens = outcome.input_tokens
            attempt.output_tokens = outcome.output_tokens
            attempt.cached_tokens = outcome.cached_tokens
            attempt.model_seconds = outcome.model_seconds
            attempt.prompt_token_ids = outcome.prompt_token_ids
            attempt.completion_token_ids = outcome.completion_token_ids
            attempt.logprobs = outcome.logprobs
            return attempt, outcome
        outcome.pool, outcome.replica = pool.name, replica
        if attempt.outcome == "ok":
            attempt.outcome = _outcome(outcome)
        attempt.http_status = outcome.status
        attempt.error = str(outcome.message)
        return attempt, outcome

    async def _prompt_token_ids(
        self, replica: str, headers: dict[str, str], content: bytes
    ) -> list[int] | None:
        """The prompt's token ids from a server that does not return them with the answer but
        can render and tokenize it: llama.cpp's ``/apply-template`` (the request's chat
        template, tools included) then ``/tokenize`` as its server tokenizes a prompt (special
        tokens added and parsed). ``None`` when the server has neither (or fails): the call is
        recorded without them, never failed for them."""
        base = replica.rstrip("/")
        try:
            rendered = await self.http.post(
                f"{base}/apply-template", content=content, headers=headers, timeout=30
            )
            prompt = rendered.json().get("prompt") if rendered.status_code == 200 else None
            if not isinstance(prompt, str):
                return None
            body = {"content": prompt, "add_special": True, "parse_special": True}
            tokens = await self.http.post(
                f"{base}/tokenize", content=json.dumps(body), headers=headers, timeout=30
            )
            ids = tokens.json().get("tokens") if tokens.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if isinstance(ids, list) and all(isinstance(i, int) for i in ids):
            return ids
        return None

    async def _stream(
        self,
        url: str,
        headers: dict[str, str],
        content: bytes,
        timeouts: httpx.Timeout,
        t0: float,
        check_arguments: bool = True,
    ) -> Completion:
        assembler = StreamAssembler(t0)
        async with self.http.stream(
            "POST", url, content=content, headers=headers, timeout=timeouts
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for_status(response)
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif not line and data:
                    assembler.feed_line("\n".join(data), time.perf_counter())
                    data = []
                if assembler.done:
                    break
            if data:
                assembler.feed_line("\n".join(data), time.perf_counter())
        return assembler.result(check_arguments=check_arguments)

    async def aclose(self) -> None:
        """Stop every router's background work and close the connections this client opened."""
        routers, self._routers = list(self._routers.values()), {}
        for router in routers:
            await router.aclose()
        if self._owns_http and not self.http.is_closed:
            await self.http.aclose()


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        _raise_for(response.status_code, response.text, response.headers.get("retry-after"))


def _raise_for(status: int, text: str, retry_after: str | None) -> None:
    if status < 400:
        return
    raise error_for_status(status, text, retry_after=parse_retry_after(retry_after))


def _result(
    pool: PoolConfig, replica: str, c: Completion, attempt: Attempt, attempts: list[Attempt]
) -> ChatResult:
    return ChatResult(
        message=c.message,
        finish_reason=c.finish_reason,
        input_tokens=c.input_tokens,
        output_tokens=c.output_tokens,
        cached_tokens=c.cached_tokens,
        ttft_seconds=c.ttft_seconds,
        latency_seconds=attempt.latency_seconds,
        replica=replica,
        attempts=attempts,
        model_seconds=c.model_seconds,
        pool=pool.name,
        model=c.model,
        response_id=c.response_id,
    )


_default: tuple[asyncio.AbstractEventLoop, LLMClient] | None = None


def default_client() -> LLMClient:
    """The process's shared client (one per event loop: connections cannot cross loops)."""
    global _default
    loop = asyncio.get_running_loop()
    if _default is None or _default[0] is not loop:
        _default = (loop, LLMClient())
    return _default[1]


async def close_default_client() -> None:
    """Close the shared client; the next :func:`chat` opens a new one."""
    global _default
    current, _default = _default, None
    if current is not None and current[0] is asyncio.get_running_loop():
        await current[1].aclose()


async def chat(
    pool: PoolConfig,
    request: ChatRequest,
    *,
    retry: RetryPolicy = DEFAULT_RETRY_POLICY,
    on_attempt: AttemptHook | None = None,
) -> ChatResult:
    """One chat call to ``pool`` through the process's shared client (see :class:`LLMClient`)."""
    return await default_client().chat(pool, request, retry=retry, on_attempt=on_attempt)
