"""Running simulated vLLM replicas: in-process for tests and the embedded stack, or ``kswarm sim``.

Each replica is its own aiohttp site on its own port with its own engine, prefix cache and
metrics (replicas share nothing, like separate GPUs), so a pool of simulated replicas exercises
the router exactly as a pool of ``vllm serve`` processes would::

    replicas = await start_replicas(4, SimConfig(time_scale=0.01))
    pool = PoolConfig(name="default", model="kswarm-sim", replicas=tuple(r.url for r in replicas))
    ...
    await stop_replicas(replicas)

The CLI wiring is the lead's: :func:`add_sim_arguments` adds the flags to a parser and
:func:`run_sim_from_args` serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

from aiohttp import web

from kswarm import looping
from kswarm.sim.config import Behaviour, SimConfig
from kswarm.sim.engine import Engine
from kswarm.sim.server import SimService

__all__ = [
    "SimReplica",
    "add_sim_arguments",
    "run_sim_from_args",
    "serve",
    "start_replicas",
    "stop_replicas",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
SHUTDOWN_TIMEOUT_SECONDS = 0.5
API_KEY_ENV = "KSWARM_SIM_API_KEY"
"""Where ``--api-key`` comes from when not given (a Secret's key, in a pod): not vLLM's own
``VLLM_API_KEY``, which a user of vLLM may have set where the embedded stack runs its simulator."""
BACKLOG = 4096
"""Listen backlog: 1,000 clients connecting at once must not overflow it (SYN retries cost 1 s)."""


class SimReplica:
    """One simulated replica; :meth:`stop` and :meth:`start` again keep its port and state."""

    def __init__(
        self, config: SimConfig, *, host: str = DEFAULT_HOST, port: int = 0, replica_id: str
    ) -> None:
        self.host = host
        self.port = port
        self.service = SimService(config, replica_id=replica_id)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Base URL, as a pool lists it (without ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def replica_id(self) -> str:
        return self.service.replica_id

    @property
    def engine(self) -> Engine:
        return self.service.engine

    @property
    def config(self) -> SimConfig:
        return self.service.config

    @property
    def healthy(self) -> bool:
        return self.service.healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.service.healthy = value

    def reconfigure(self, **changes: Any) -> None:
        """Change faults or behaviour of a running replica, e.g. ``fail_500_rate=1.0``."""
        self.service.reconfigure(dataclasses.replace(self.service.config, **changes))

    async def start(self) -> None:
        if self._runner is not None:
            return
        self.service.closing.clear()
        runner = web.AppRunner(
            self.service.app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=BACKLOG, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        log.info("simulated replica %s serving %s", self.replica_id, self.url)

    async def stop(self) -> None:
        """Close the port; requests in flight are cut off (the client sees a broken connection)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.service.closing.set()
        await runner.cleanup()
        self.service.engine.close()

    async def __aenter__(self) -> SimReplica:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_replicas(
    n: int, config: SimConfig | None = None, host: str = DEFAULT_HOST, *, base_port: int = 0
) -> list[SimReplica]:
    """Start ``n`` replicas on free ports (or ``base_port``, ``base_port + 1``, ...)."""
    config = config or SimConfig()
    replicas = [
        SimReplica(config, host=host, port=base_port + i if base_port else 0, replica_id=f"sim-{i}")
        for i in range(n)
    ]
    try:
        for replica in replicas:
            await replica.start()
    except BaseException:
        await stop_replicas(replicas)
        raise
    return replicas


async def stop_replicas(replicas: Sequence[SimReplica]) -> None:
    await asyncio.gather(*(replica.stop() for replica in replicas))


async def serve(
    port: int, config: SimConfig, *, host: str = DEFAULT_HOST, replicas: int = 1
) -> None:
    """Serve ``replicas`` replicas on ``port``, ``port + 1``, ... until cancelled or signalled."""
    running = await start_replicas(replicas, config, host, base_port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    urls = " ".join(r.url for r in running)
    keyed = ", API key required" if config.api_key else ""
    print(
        f"kswarm sim: model {config.model!r}, time scale {config.time_scale:g}{keyed}: {urls}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await stop_replicas(running)


_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--time-scale", "time_scale", float, "multiplies every modelled duration"),
    ("--seed", "seed", int, "seeds answers and fault draws"),
    ("--model", "model", str, "served model name"),
    ("--max-num-seqs", "max_num_seqs", int, "largest running batch"),
    ("--prefill-tokens-per-second", "prefill_tokens_per_second", float, "prefill throughput"),
    ("--itl-seconds", "itl_seconds", float, "inter-token latency at batch 1"),
    ("--num-gpu-blocks", "num_gpu_blocks", int, "KV/prefix cache capacity in 16-token blocks"),
    ("--max-model-len", "max_model_len", int, "longest prompt plus max_tokens"),
    ("--fail-503-rate", "fail_503_rate", float, "fraction of requests answered 503"),
    ("--fail-500-rate", "fail_500_rate", float, "fraction of requests answered 500"),
    ("--fail-429-rate", "fail_429_rate", float, "fraction of requests answered 429"),
    ("--retry-after-seconds", "retry_after_seconds", float, "Retry-After sent with a 503"),
    ("--slow-rate", "slow_rate", float, "fraction of requests that are slow"),
    ("--slow-factor", "slow_factor", float, "how much slower a slow request is"),
    ("--hang-rate", "hang_rate", float, "fraction of requests that never answer"),
)


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``kswarm sim``'s flags; defaults are :class:`SimConfig`'s."""
    defaults = SimConfig()
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the first replica")
    parser.add_argument("--replicas", type=int, default=1, help="replicas on consecutive ports")
    for flag, field, kind, text in _FLAGS:
        default = getattr(defaults, field)
        parser.add_argument(
            flag, dest=field, type=kind, default=default, help=f"{text} ({default})"
        )
    parser.add_argument(
        "--api-key",
        default=None,
        help="as vllm serve --api-key: /v1/* requests must send Authorization: Bearer KEY "
        "(default: $KSWARM_SIM_API_KEY, else no check)",
    )
    parser.add_argument(
        "--behaviour",
        default=None,
        metavar="MODULE:FUNCTION",
        help="what the model answers: an importable (body, rng) -> message function "
        "(default: the scripted behaviour of kswarm.sim.scripted)",
    )


def load_behaviour(ref: str) -> Behaviour:
    """The behaviour function named ``MODULE:FUNCTION``; ``ValueError`` naming what is wrong."""
    module_name, sep, name = ref.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--behaviour: expected MODULE:FUNCTION, got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"--behaviour: cannot import {module_name!r}: {e}") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"--behaviour: {module_name!r} has no function {name!r}")
    return cast(Behaviour, fn)


def sim_config_from_args(ns: argparse.Namespace) -> SimConfig:
    behaviour = getattr(ns, "behaviour", None)
    api_key = getattr(ns, "api_key", None) or os.environ.get(API_KEY_ENV) or None
    return SimConfig(
        **{field: getattr(ns, field) for _, field, _, _ in _FLAGS},
        behaviour=load_behaviour(behaviour) if behaviour else None,
        api_key=api_key,
    )


def run_sim_from_args(ns: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the exit code (2 when the flags are invalid)."""
    try:
        config = sim_config_from_args(ns)
    except ValueError as e:
        print(f"kswarm sim: {e}", file=sys.stderr)
        return 2
    if ns.replicas < 1:
        print("kswarm sim: --replicas: must be >= 1", file=sys.stderr)
        return 2
    try:
        looping.run(serve(ns.port, config, host=ns.host, replicas=ns.replicas))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(
            f"kswarm sim: cannot listen on {ns.host}:{ns.port}: {e.strerror or e}", file=sys.stderr
        )
        return 1
    return 0
