"""Model pools for kswarm: the client agents call and the router that picks replicas. It talks
to any OpenAI-compatible server (vLLM, llama.cpp, a hosted API, or the simulator of
:mod:`kswarm.sim`, which this package never imports).

Only re-exports live here; see the modules: :mod:`~kswarm.llm.errors`, :mod:`~kswarm.llm.pools`,
:mod:`~kswarm.llm.chats`, :mod:`~kswarm.llm.pacing`, :mod:`~kswarm.llm.client` (over
:mod:`~kswarm.llm.transport`), :mod:`~kswarm.llm.router`, :mod:`~kswarm.llm.replicas`.
"""

from __future__ import annotations

from kswarm.llm.chats import Attempt, ChatRequest, ChatResult
from kswarm.llm.client import ClientSettings, LLMClient, chat, close_default_client, default_client
from kswarm.llm.errors import (
    BadRequest,
    LLMError,
    LLMTimeout,
    MalformedResponse,
    ModelNotServed,
    Overloaded,
    PoolNotFound,
    RateLimited,
    ReplicaUnavailable,
    ServerError,
)
from kswarm.llm.pacing import RateLimiter, RetryPolicy
from kswarm.llm.pools import PoolConfig, PoolRegistry, load_pools, load_pools_file
from kswarm.llm.replicas import RouterSettings
from kswarm.llm.router import Router

__all__ = [
    "Attempt",
    "BadRequest",
    "ChatRequest",
    "ChatResult",
    "ClientSettings",
    "LLMClient",
    "LLMError",
    "LLMTimeout",
    "MalformedResponse",
    "ModelNotServed",
    "Overloaded",
    "PoolConfig",
    "PoolNotFound",
    "PoolRegistry",
    "RateLimited",
    "RateLimiter",
    "ReplicaUnavailable",
    "RetryPolicy",
    "Router",
    "RouterSettings",
    "ServerError",
    "chat",
    "close_default_client",
    "default_client",
    "load_pools",
    "load_pools_file",
]
