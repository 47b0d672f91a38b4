"""Errors of model calls, so callers act on intent (retry, re-route, give up), never on strings.

Every failure of a chat call becomes one of these classes. Each carries what is known about where
it happened (``pool``, ``replica``, ``status``), whether trying again can help (``retryable``), and,
once the client gives up, every ``attempts`` it made. Temporal activities translate ``retryable``
into ``ApplicationError(non_retryable=...)``; the operator into kopf's temporary or permanent error.

    KswarmError                          (kswarm.errors)
    └── LLMError                         any failed model call
        ├── PoolNotFound                 no pool of that name is configured        never retried
        ├── ReplicaUnavailable           connection refused, or every replica ejected  retried
        ├── LLMTimeout                   no complete answer in time (or HTTP 408/504)   retried
        ├── RateLimited                  HTTP 429; ``retry_after`` from the header       retried
        ├── Overloaded                   HTTP 503 (vLLM's answer to overload)            retried
        ├── ServerError                  any other 5xx                                  retried
        ├── BadRequest                   HTTP 400/422 and other 4xx                never retried
        │   └── ModelNotServed           404, or a 400 saying the model does not exist  never
        └── MalformedResponse            unparseable body, or tool-call arguments that are not
                                         JSON; ``raw`` holds the text; retried (sampling again
                                         can help)

:func:`error_for_status` is the one place that maps an HTTP answer to a class.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kswarm.errors import KswarmError

if TYPE_CHECKING:
    from kswarm.llm.chats import Attempt

__all__ = [
    "BadRequest",
    "LLMError",
    "LLMTimeout",
    "MalformedResponse",
    "ModelNotServed",
    "Overloaded",
    "PoolNotFound",
    "RateLimited",
    "ReplicaUnavailable",
    "ServerError",
    "context_overflow",
    "error_for_status",
    "error_message",
]

_MODEL_MISSING = re.compile(r"model .* does not exist|model not found|no such model", re.I)
_CONTEXT = re.compile(
    r"maximum context length|maximum model length|exceeds? the available context size"
    r"|context (?:window|length) exceeded|exceed_context_size",
    re.I,
)
_CONTEXT_LIMIT = re.compile(
    r"maximum context length is (\d+)|maximum model length of (\d+)|\"n_ctx\"\s*:\s*(\d+)", re.I
)


class LLMError(KswarmError):
    """A model call failed. ``attempts`` lists every try once the client has given up."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        pool: str | None = None,
        replica: str | None = None,
        status: int | None = None,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.pool = pool
        self.replica = replica
        self.status = status
        self.attempts: list[Attempt] = list(attempts)

    def __str__(self) -> str:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("pool", self.pool), ("replica", self.replica), ("status", self.status))
            if v is not None
        )
        tries = f", after {len(self.attempts)} attempts" if len(self.attempts) > 1 else ""
        return f"{self.message} ({where}{tries})" if where or tries else self.message


class PoolNotFound(LLMError):
    """No pool of that name is configured; the message names the pools that are."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown model pool {name!r}; known pools: {listed}", pool=name)
        self.known = tuple(sorted(known))


class ReplicaUnavailable(LLMError):
    """The replica refused the connection, or the router has no healthy replica left."""

    retryable = True


class LLMTimeout(LLMError):
    """The replica did not answer completely within the request timeout."""

    retryable = True


class RateLimited(LLMError):
    """HTTP 429. ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **where: Any) -> None:
        super().__init__(message, **where)
        self.retry_after = retry_after


class Overloaded(LLMError):
    """HTTP 503: the engine is overloaded or not ready. ``retry_after`` as for 429."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **where: Any) -> None:
        super().__init__(message, **where)
        self.retry_after = retry_after


class ServerError(LLMError):
    """Any other 5xx answer."""

    retryable = True


class BadRequest(LLMError):
    """The server refused the request as invalid (400, 422, other 4xx): sending it again fails.
    ``body`` is the server's answer as it came (its error object may say more than its
    message, e.g. llama.cpp's ``n_ctx``)."""

    body = ""


class ModelNotServed(BadRequest):
    """The replica does not serve the requested model (404, or a 400 that says so)."""


class MalformedResponse(LLMError):
    """The answer could not be used; ``raw`` is the offending text (body, chunk or arguments)."""

    retryable = True

    def __init__(self, message: str, *, raw: str, **where: Any) -> None:
        super().__init__(message, **where)
        self.raw = raw


def error_message(body: str) -> str:
    """The human message inside an OpenAI/vLLM error body, or the body itself, shortened."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
        if isinstance(data.get("message"), str):
            return str(data["message"])[:500]
    return body.strip()[:500]


def error_for_status(
    status: int,
    body: str,
    *,
    pool: str | None = None,
    replica: str | None = None,
    retry_after: float | None = None,
) -> LLMError:
    """Map a non-2xx HTTP answer to the error class that says what to do about it."""
    text = error_message(body)
    message = f"HTTP {status}: {text}"
    where: dict[str, Any] = {"pool": pool, "replica": replica, "status": status}
    if status == 429:
        return RateLimited(message, retry_after=retry_after, **where)
    if status == 503:
        return Overloaded(message, retry_after=retry_after, **where)
    if status in (408, 504):
        return LLMTimeout(message, **where)
    if status >= 500:
        return ServerError(message, **where)
    if status == 404 or (status in (400, 422) and _MODEL_MISSING.search(text)):
        return ModelNotServed(message, **where)
    error = BadRequest(message, **where)
    error.body = body[:4000]
    return error


def context_overflow(error: LLMError) -> tuple[bool, int | None]:
    """Whether ``error`` is the server's refusal of a prompt longer than its context window
    (vLLM's and llama.cpp's 400), and the window it names, when it names one."""
    if not isinstance(error, BadRequest) or isinstance(error, ModelNotServed):
        return False, None
    text = getattr(error, "body", "") or error.message
    if not _CONTEXT.search(text):
        return False, None
    found = _CONTEXT_LIMIT.search(text)
    limit = next((int(g) for g in found.groups() if g), None) if found else None
    return True, limit
