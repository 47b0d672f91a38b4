"""``vllm serve`` for a pool: the command line per model family, and a server for one run.

The operator runs this command in a managed pool's Deployment; ``kswarm run --serve-model
MODEL`` (or ``engine: vllm`` on a pool of the pools file) runs it as a child process on a
machine with a GPU and the ``vllm`` extra, waits for ``/health``, uses it as the pool and stops
it with the run. Every server gets prefix caching (agents of one job share long prompt
prefixes), automatic tool choice, and the tool-call parser of its model's family.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import AsyncIterator, Sequence

from kswarm.errors import ConfigError
from kswarm.llm.llamacpp import server_process

__all__ = [
    "DEFAULT_PARSER",
    "INSTALL_HINT",
    "serve_arguments",
    "serve_command",
    "tool_call_parser",
    "vllm_installed",
    "vllm_server",
]

INSTALL_HINT = "pip install 'kswarm[vllm]'"
# Model-name fragment -> vLLM --tool-call-parser; the first match wins.
_PARSERS: tuple[tuple[str, str], ...] = (
    ("qwen3-coder", "qwen3_coder"),
    ("qwen", "hermes"),
    ("hermes", "hermes"),
    ("kimi-k2", "kimi_k2"),
    ("deepseek-v3", "deepseek_v3"),
    ("llama-4", "llama4_pythonic"),
    ("llama", "llama3_json"),
    ("mistral", "mistral"),
    ("granite", "granite"),
    ("gpt-oss", "openai"),
)
DEFAULT_PARSER = "hermes"


def tool_call_parser(model: str) -> str:
    """vLLM's tool-call parser for ``model``, by family; Hermes-style when none matches."""
    lowered = model.lower()
    return next((p for frag, p in _PARSERS if frag in lowered), DEFAULT_PARSER)


def serve_arguments(model: str, *, host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The options of ``vllm serve MODEL``; ``extra`` comes last and wins, and an
    ``--enable-auto-tool-choice`` or ``--tool-call-parser`` in it replaces ours."""
    args = ["--host", host, "--port", str(port), "--enable-prefix-caching"]
    if not any(a.startswith("--enable-auto-tool-choice") for a in extra):
        args.append("--enable-auto-tool-choice")
    if not any(a.startswith("--tool-call-parser") for a in extra):
        args += ["--tool-call-parser", tool_call_parser(model)]
    return [*args, *extra]


def serve_command(model: str, *, host: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """``vllm serve MODEL ...`` as run on this machine."""
    vllm = shutil.which("vllm") or "vllm"
    return [vllm, "serve", model, *serve_arguments(model, host=host, port=port, extra=extra)]


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None or shutil.which("vllm") is not None


@contextlib.asynccontextmanager
async def vllm_server(
    model: str, *, host: str = "127.0.0.1", port: int, health_timeout: float = 1800.0
) -> AsyncIterator[str]:
    """Run ``vllm serve MODEL`` until the block ends; yield its base URL once healthy (loading
    weights and compiling may take many minutes). :class:`ConfigError` without vLLM."""
    if not vllm_installed():
        raise ConfigError(f"--serve-model needs vLLM, which is not installed: {INSTALL_HINT}")
    url = f"http://{host}:{port}"
    command = serve_command(model, host=host, port=port)
    async with server_process(command, url, health_timeout=health_timeout, stop_seconds=60):
        yield url
