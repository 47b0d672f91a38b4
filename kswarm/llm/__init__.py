"""Model pools for kswarm: the client agents call, the router that picks replicas, and the
simulator that stands in for vLLM where there is no GPU.

Only re-exports live here; see the modules: :mod:`~kswarm.llm.errors`, :mod:`~kswarm.llm.pools`,
:mod:`~kswarm.llm.chats`, :mod:`~kswarm.llm.pacing`, :mod:`~kswarm.llm.client` (over
:mod:`~kswarm.llm.transport`), :mod:`~kswarm.llm.router`, :mod:`~kswarm.llm.replicas`,
:mod:`~kswarm.llm.simulator` (with ``sim_config``, ``sim_engine``, ``sim_protocol``,
``sim_server``, ``sim_metrics``).
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
from kswarm.llm.sim_config import Behaviour, SimConfig, trivial_behaviour
from kswarm.llm.simulator import (
    SimReplica,
    add_sim_arguments,
    run_sim_from_args,
    serve,
    start_replicas,
    stop_replicas,
)

__all__ = [
    "Attempt",
    "BadRequest",
    "Behaviour",
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
    "SimConfig",
    "SimReplica",
    "add_sim_arguments",
    "chat",
    "close_default_client",
    "default_client",
    "load_pools",
    "load_pools_file",
    "run_sim_from_args",
    "serve",
    "start_replicas",
    "stop_replicas",
    "trivial_behaviour",
]
