"""Model servers that ``kswarm run`` starts for its pools: ``engine: vllm`` or ``engine: llamacpp``.

A pool of the pools file may name an engine in place of replicas::

    pools:
      - name: default
        model: Qwen/Qwen3-8B
        engine: vllm                          # vllm serve Qwen/Qwen3-8B, on this machine's GPU
        engineArgs: ["--max-model-len", "32768"]
      - name: cpu
        model: smollm2
        engine: llamacpp                      # llama.cpp on CPU, the bundled SmolLM2-135M
        engineArgs: ["--ctx-size", "8192"]

:func:`served_pools` starts one server per such pool on a free loopback port (``vllm serve``
with prefix caching, auto tool choice and the family's tool-call parser, see
:mod:`kswarm.llm.vllm`; ``kswarm llamacpp`` in a child process, see :mod:`kswarm.llm.llamacpp`),
waits for each ``/health``, yields a pools file in which each of them is an ordinary pool whose
one replica is that server, and stops the servers when the block ends. ``kswarm run
--serve-model MODEL`` is the same thing for one pool ``default`` with ``engine: vllm``.

A missing engine is a :class:`~kswarm.errors.ConfigError` naming the pool and the ``pip
install`` that provides it, raised before anything starts (:func:`check_engines`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from kswarm.devserver import free_port
from kswarm.errors import ConfigError
from kswarm.llm import llamacpp, vllm
from kswarm.llm.pools import PoolConfig, PoolRegistry, load_pools_file, pool_entry

__all__ = [
    "HEALTH_TIMEOUT_SECONDS",
    "check_engines",
    "engine_command",
    "engine_pools",
    "served_pools",
]

HEALTH_TIMEOUT_SECONDS = {"vllm": 1800.0, "llamacpp": 180.0}
"""How long a server may take to answer ``/health``: vLLM loads weights and compiles graphs."""
_STOP_SECONDS = {"vllm": 60.0, "llamacpp": 30.0}


def engine_pools(pools: PoolRegistry) -> list[PoolConfig]:
    """The pools of ``pools`` that name an engine."""
    return [p for p in pools if p.engine is not None]


def check_engines(pools: Sequence[PoolConfig]) -> None:
    """:class:`ConfigError` naming the first pool whose engine is not installed here."""
    for pool in pools:
        if pool.engine == "vllm" and not vllm.vllm_installed():
            raise ConfigError(
                f"pool {pool.name!r}: engine vllm is not installed: {vllm.INSTALL_HINT}"
            )
        if pool.engine == "llamacpp" and importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError(
                f"pool {pool.name!r}: engine llamacpp is not installed: {llamacpp.INSTALL_HINT}"
            )


def engine_command(pool: PoolConfig, *, host: str, port: int) -> list[str]:
    """The command line that serves ``pool`` on ``host:port``."""
    if pool.engine == "vllm":
        return vllm.serve_command(pool.model, host=host, port=port, extra=pool.engine_args)
    if pool.engine == "llamacpp":
        own = ["--host", host, "--port", str(port)]
        return [sys.executable, "-P", "-m", "kswarm.cli", "llamacpp", *own, *pool.engine_args]
    raise ConfigError(f"pool {pool.name!r}: no engine to start")


@contextlib.asynccontextmanager
async def served_pools(pools_file: str, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Start the engine of every pool of ``pools_file`` that names one; yield a pools file
    (``pools_file`` itself when none does) whose pools all have replicas; stop the servers
    when the block ends, also when a server fails to become healthy."""
    pools = load_pools_file(pools_file)
    engines = engine_pools(pools)
    if not engines:
        yield pools_file
        return
    check_engines(engines)
    served: dict[str, PoolConfig] = {}
    async with contextlib.AsyncExitStack() as stack:
        for pool in engines:
            port = free_port()
            url = f"http://{host}:{port}"
            command = engine_command(pool, host=host, port=port)
            assert pool.engine is not None
            try:
                await stack.enter_async_context(
                    llamacpp.server_process(
                        command,
                        url,
                        health_timeout=HEALTH_TIMEOUT_SECONDS[pool.engine],
                        stop_seconds=_STOP_SECONDS[pool.engine],
                    )
                )
            except ConfigError as e:
                raise ConfigError(f"pool {pool.name!r}: engine {pool.engine}: {e}") from e
            served[pool.name] = replace(pool, replicas=(url,), engine=None, engine_args=())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pools.yaml"
            entries = [pool_entry(served.get(p.name, p)) for p in pools]
            path.write_text(yaml.safe_dump({"pools": entries}))
            yield str(path)


def serve_model_pools(model: str, directory: str) -> str:
    """A pools file in ``directory`` with one pool ``default`` served by ``vllm serve MODEL``
    (``kswarm run --serve-model MODEL``)."""
    path = Path(directory) / "serve-model.yaml"
    pool = {"name": "default", "model": model, "engine": "vllm"}
    path.write_text(yaml.safe_dump({"pools": [pool]}))
    return str(path)
