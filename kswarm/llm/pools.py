"""Model pools: the named sets of OpenAI-compatible replicas that agents call.

A pool is what a job names (``spec.subagents.pool``); the client and router only ever see a
:class:`PoolConfig`. Pools come from a small config document, the same shape the operator writes
for a ``ModelPool`` and the embedded stack writes for its simulator::

    pools:
      - name: default
        model: kswarm-sim
        replicas: ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
        maxConcurrency: 64
        rateLimit: {requestsPerSecond: 50}
        router: prefix-affinity
        requestTimeoutSeconds: 120
        toolChoice: auto              # or required: every step is a tool call (see below)
        contextWindow: 8192           # tokens; else read from the server (vLLM's max_model_len)
        toolCallsInContent: false     # parse calls a model wrote as JSON in its text
        maxOutputTokens: 256          # cap on each answer's tokens
      - name: local
        model: Qwen/Qwen3-8B
        engine: vllm                  # kswarm run starts the server itself (no replicas)
        engineArgs: ["--max-model-len", "32768"]

Options for real servers: with ``toolChoice: required`` the server must answer every step with
a tool call (llama.cpp and vLLM constrain the output by grammar), so agents end through a tool
of their own (``finish`` for the orchestrator, ``answer`` for the others). ``contextWindow`` is
what context management keeps a conversation under. ``toolCallsInContent`` is a fallback for a
server that has no parser for the model's call format, off by default (vLLM's parsers and
llama.cpp's templates are better).

A pool with ``engine`` (``vllm`` or ``llamacpp``) has no replicas: ``kswarm run`` starts that
model server for the run (``vllm serve MODEL`` on a GPU, or llama.cpp on CPU with the bundled
model unless ``engineArgs`` names ``--model PATH``), waits for its ``/health``, serves the pool
from it and stops it with the run (:mod:`kswarm.llm.engines`). A worker never starts servers: it
refuses such a pool, naming it.

Every validation error is a :class:`~kswarm.errors.ConfigError` naming the field, e.g.
``pools[1].replicas[0]: must be an http(s) base URL, got 'localhost:8000'``.

A pool behind an API key gives it as ``apiKey`` (the key itself) or, better, as ``apiKeyFile``
(a file that holds it, such as a mounted Secret; never both). Loading the document reads the file
into :attr:`PoolConfig.api_key` (``read_keys=False`` leaves it unread, for a reader that is not
where the file is, such as the operator); :func:`with_api_key` reads it again, so a worker that
polls its files sees a rotated key, and :func:`pool_entry` writes the file's path back, never the
key read from it.

On Kubernetes the operator writes this document from the ``ModelPool`` objects of every
namespace; their names are namespace-qualified, ``NAMESPACE/NAME`` (:func:`qualified_name`), so
two namespaces may each have a pool ``fast`` and each gets its own task queue
(``kswarm-pool-team-a/fast``). Names without a ``/`` are pools that belong to no namespace: the
embedded stack's pools and the cluster's static ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from kswarm.errors import ConfigError
from kswarm.llm.errors import PoolNotFound

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_REQUEST_TIMEOUT_SECONDS",
    "DEFAULT_ROUTER",
    "ENGINES",
    "ROUTER_POLICIES",
    "TOOL_CHOICES",
    "PoolConfig",
    "PoolRegistry",
    "load_pools",
    "load_pools_file",
    "parse_pools_text",
    "pool_entry",
    "qualified_name",
    "read_api_key",
    "split_name",
    "with_api_key",
]

DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_REQUEST_TIMEOUT_SECONDS = 120.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_ROUTER = "prefix-affinity"
ROUTER_POLICIES = ("prefix-affinity", "least-load", "round-robin")
TOOL_CHOICES = ("auto", "required")
ENGINES = ("vllm", "llamacpp")

_FIELDS = {
    "name",
    "model",
    "replicas",
    "maxConcurrency",
    "rateLimit",
    "router",
    "apiKey",
    "apiKeyFile",
    "requestTimeoutSeconds",
    "connectTimeoutSeconds",
    "stream",
    "toolChoice",
    "contextWindow",
    "toolCallsInContent",
    "maxOutputTokens",
    "returnTokenIds",
    "engine",
    "engineArgs",
}


@dataclass(frozen=True, kw_only=True)
class PoolConfig:
    name: str
    """The pool's name, as jobs refer to it."""
    model: str
    """Model name sent in requests unless a request names another."""
    replicas: tuple[str, ...]
    """Base URLs of the replicas, e.g. ``http://127.0.0.1:8001``; the client appends ``/v1``."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Requests one process keeps in flight per replica; more wait for a free slot."""
    requests_per_second: float | None = None
    """Rate limit for the pool in this process; ``None`` means unlimited."""
    router: str = DEFAULT_ROUTER
    """Replica choice: ``prefix-affinity``, ``least-load`` or ``round-robin``."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer``; ``None`` sends no header."""
    api_key_file: str | None = None
    """The file ``api_key`` comes from (``apiKeyFile``), e.g. a key of a mounted Secret; the
    loader reads it (see :func:`with_api_key`), the document holds only its path."""
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    """Total time one attempt may take, streaming included."""
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS
    """Time to open a connection to a replica."""
    return_token_ids: bool = False
    """Ask the servers for token ids and log-probabilities (vLLM's ``return_token_ids`` and
    ``logprobs``) and record them per model call, for token-level training exports."""
    stream: bool = False
    """Model steps stream their answers: every call's time to first token is then measured
    and recorded (the dashboard's Pools page shows it); parsing the chunks costs the worker a
    little CPU. Off: the answer comes whole and the time to first token stays unknown."""
    tool_choice: str = "auto"
    """``auto``: the model may answer in text (its final answer); ``required``: every step is
    a tool call and agents end through their ``finish``/``answer`` tool."""
    context_window: int | None = None
    """Prompt plus answer tokens the model takes; ``None``: read from the server where it says
    (vLLM's ``max_model_len``, llama.cpp's slot size), else unknown."""
    tool_calls_in_content: bool = False
    """Read tool calls a model wrote as JSON in its text (``{"name": ..., "arguments": ...}``)
    when the server parsed none: a fallback for servers without a parser for the model."""
    max_output_tokens: int | None = None
    """``max_tokens`` of every request; ``None`` leaves the server's default."""
    engine: str | None = None
    """``vllm`` or ``llamacpp``: ``kswarm run`` starts this model server for the run and the
    pool has no replicas until then (see :mod:`kswarm.llm.engines`); ``None``: replicas given."""
    engine_args: tuple[str, ...] = ()
    """Extra command-line options of the engine's server (``vllm serve`` or ``kswarm
    llamacpp``), after kswarm's own."""

    def __post_init__(self) -> None:
        if isinstance(self.replicas, list):
            object.__setattr__(self, "replicas", tuple(self.replicas))
        if isinstance(self.engine_args, list):
            object.__setattr__(self, "engine_args", tuple(self.engine_args))
        _validate(vars(self), f"pool {self.name!r}")

    @property
    def task_queue(self) -> str:
        """The Temporal task queue that carries this pool's model calls."""
        return f"kswarm-pool-{self.name}"

    def __repr__(self) -> str:
        # The API key never reaches logs.
        key = "'***'" if self.api_key else "None"
        from_file = f", api_key_file={self.api_key_file!r}" if self.api_key_file else ""
        return (
            f"PoolConfig(name={self.name!r}, model={self.model!r}, replicas={self.replicas!r}, "
            f"router={self.router!r}, max_concurrency={self.max_concurrency}, "
            f"api_key={key}{from_file})"
        )


class PoolRegistry:
    """Pools by name. ``get`` raises :class:`PoolNotFound` naming the known pools."""

    def __init__(self, pools: Iterable[PoolConfig] = ()) -> None:
        self._pools: dict[str, PoolConfig] = {}
        for pool in pools:
            self.add(pool)

    def add(self, pool: PoolConfig) -> None:
        """Add a pool; a second pool of the same name is a configuration error."""
        if pool.name in self._pools:
            raise ConfigError(f"pools: two pools are named {pool.name!r}")
        self._pools[pool.name] = pool

    def get(self, name: str) -> PoolConfig:
        """The pool named ``name``; a missing pool is an error, never ``None``."""
        try:
            return self._pools[name]
        except KeyError:
            raise PoolNotFound(name, list(self._pools)) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._pools)

    def __contains__(self, name: object) -> bool:
        return name in self._pools

    def __iter__(self) -> Iterator[PoolConfig]:
        return iter(self._pools.values())

    def __len__(self) -> int:
        return len(self._pools)

    def __repr__(self) -> str:
        return f"PoolRegistry({sorted(self._pools)!r})"


def qualified_name(namespace: str, name: str) -> str:
    """The pool key of ModelPool ``namespace/name``, as workers and jobs' model calls know it."""
    return f"{namespace}/{name}"


def split_name(key: str) -> tuple[str | None, str]:
    """``team-a/fast`` -> ``("team-a", "fast")``; ``default`` -> ``(None, "default")``."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def pool_entry(pool: PoolConfig) -> dict[str, Any]:
    """One item of the ``pools`` list for ``pool``: what :func:`load_pools` reads back."""
    entry: dict[str, Any] = {
        "name": pool.name,
        "model": pool.model,
        "replicas": list(pool.replicas),
        "maxConcurrency": pool.max_concurrency,
        "router": pool.router,
    }
    if pool.requests_per_second is not None:
        entry["rateLimit"] = {"requestsPerSecond": pool.requests_per_second}
    if pool.api_key_file is not None:
        entry["apiKeyFile"] = pool.api_key_file  # the path only: the key stays in its file
    elif pool.api_key is not None:
        entry["apiKey"] = pool.api_key
    if pool.request_timeout_seconds != DEFAULT_REQUEST_TIMEOUT_SECONDS:
        entry["requestTimeoutSeconds"] = pool.request_timeout_seconds
    if pool.connect_timeout_seconds != DEFAULT_CONNECT_TIMEOUT_SECONDS:
        entry["connectTimeoutSeconds"] = pool.connect_timeout_seconds
    if pool.stream:
        entry["stream"] = True
    if pool.tool_choice != "auto":
        entry["toolChoice"] = pool.tool_choice
    if pool.context_window is not None:
        entry["contextWindow"] = pool.context_window
    if pool.tool_calls_in_content:
        entry["toolCallsInContent"] = True
    if pool.max_output_tokens is not None:
        entry["maxOutputTokens"] = pool.max_output_tokens
    if pool.return_token_ids:
        entry["returnTokenIds"] = True
    if pool.engine is not None:
        del entry["replicas"]
        entry["engine"] = pool.engine
        if pool.engine_args:
            entry["engineArgs"] = list(pool.engine_args)
    return entry


def load_pools(document: Mapping[str, Any], *, read_keys: bool = True) -> PoolRegistry:
    """Build a registry from ``{"pools": [...]}`` (camelCase keys, as in the YAML above).

    ``read_keys``: read each ``apiKeyFile`` now (a file that cannot be read is an error naming
    the field); ``False`` leaves the pools' ``api_key`` unset, to be read by :func:`with_api_key`.
    """
    if not isinstance(document, Mapping):
        raise ConfigError(f"pool config: must be a mapping, got {type(document).__name__}")
    items = document.get("pools")
    if not isinstance(items, list):
        raise ConfigError("pools: must be a list of pools")
    return PoolRegistry(
        _parse_pool(item, f"pools[{i}]", read_keys=read_keys) for i, item in enumerate(items)
    )


def load_pools_file(path: str, *, read_keys: bool = True) -> PoolRegistry:
    """Read a YAML (or JSON) pool config file."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"pool config {path}: {e.strerror}") from e
    return parse_pools_text(text, path, read_keys=read_keys)


def parse_pools_text(text: str | bytes, source: str, *, read_keys: bool = True) -> PoolRegistry:
    """A registry from a pool config's YAML text; ``source`` names it in errors."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"pool config {source}: not valid YAML: {e}") from e
    return load_pools(document or {}, read_keys=read_keys)


def read_api_key(path: str) -> str:
    """The API key held in file ``path``, without the whitespace around it (a Secret written
    with ``echo`` ends in a newline); :class:`ConfigError` saying why when there is none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        key = raw.decode().strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if not key:
        raise ConfigError(f"{path} is empty")
    return key


def with_api_key(pool: PoolConfig) -> PoolConfig:
    """``pool`` with the key its ``api_key_file`` holds now (``pool`` itself when it names no
    file); :class:`ConfigError` when the file cannot be read or is empty."""
    if pool.api_key_file is None:
        return pool
    key = read_api_key(pool.api_key_file)
    return pool if key == pool.api_key else replace(pool, api_key=key)


def _parse_pool(item: Any, path: str, *, read_keys: bool = True) -> PoolConfig:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{path}: must be a mapping, got {type(item).__name__}")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}.{unknown[0]}: unknown field; allowed: {', '.join(sorted(_FIELDS))}"
        )
    replicas = item.get("replicas", [] if "engine" in item else None)
    if isinstance(replicas, str):
        replicas = [replicas]
    if not isinstance(replicas, list):
        raise ConfigError(f"{path}.replicas: must be a list of base URLs")
    engine_args = item.get("engineArgs", [])
    if not isinstance(engine_args, list) or not all(isinstance(a, str) for a in engine_args):
        raise ConfigError(f"{path}.engineArgs: must be a list of strings, got {engine_args!r}")
    rate = item.get("rateLimit")
    rps: Any = None
    if rate is not None:
        if not isinstance(rate, Mapping) or set(rate) - {"requestsPerSecond"}:
            raise ConfigError(f"{path}.rateLimit: must be {{requestsPerSecond: N}}")
        rps = rate.get("requestsPerSecond")
    fields = {
        "name": _required_str(item, "name", path),
        "model": _required_str(item, "model", path),
        "replicas": tuple(replicas),
        "max_concurrency": item.get("maxConcurrency", DEFAULT_MAX_CONCURRENCY),
        "requests_per_second": rps,
        "router": item.get("router", DEFAULT_ROUTER),
        "api_key": item.get("apiKey"),
        "api_key_file": item.get("apiKeyFile"),
        "request_timeout_seconds": item.get(
            "requestTimeoutSeconds", DEFAULT_REQUEST_TIMEOUT_SECONDS
        ),
        "connect_timeout_seconds": item.get(
            "connectTimeoutSeconds", DEFAULT_CONNECT_TIMEOUT_SECONDS
        ),
        "stream": item.get("stream", False),
        "tool_choice": item.get("toolChoice", "auto"),
        "context_window": item.get("contextWindow"),
        "tool_calls_in_content": item.get("toolCallsInContent", False),
        "max_output_tokens": item.get("maxOutputTokens"),
        "return_token_ids": item.get("returnTokenIds", False),
        "engine": item.get("engine"),
        "engine_args": tuple(engine_args),
    }
    _validate(fields, path, camel=True)
    if fields["api_key_file"] is not None:
        if fields["api_key"] is not None:
            raise ConfigError(
                f"{path}.apiKeyFile: not together with apiKey; give the key one way, not both"
            )
        if read_keys:
            try:
                fields["api_key"] = read_api_key(fields["api_key_file"])
            except ConfigError as e:
                raise ConfigError(f"{path}.apiKeyFile: {e}") from None
    return PoolConfig(**fields)


def _required_str(item: Mapping[str, Any], key: str, path: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}.{key}: required, a non-empty string")
    return value


_CAMEL = {
    "max_concurrency": "maxConcurrency",
    "requests_per_second": "rateLimit.requestsPerSecond",
    "api_key": "apiKey",
    "api_key_file": "apiKeyFile",
    "request_timeout_seconds": "requestTimeoutSeconds",
    "connect_timeout_seconds": "connectTimeoutSeconds",
    "tool_choice": "toolChoice",
    "context_window": "contextWindow",
    "tool_calls_in_content": "toolCallsInContent",
    "max_output_tokens": "maxOutputTokens",
    "return_token_ids": "returnTokenIds",
    "engine_args": "engineArgs",
}


def _validate(values: Mapping[str, Any], path: str, *, camel: bool = False) -> None:
    """Check every field; ``camel`` names fields as the config document spells them."""

    def at(field: str) -> str:
        return f"{path}.{_CAMEL.get(field, field) if camel else field}"

    for key in ("name", "model"):
        if not isinstance(values[key], str) or not values[key]:
            raise ConfigError(f"{at(key)}: required, a non-empty string")
    namespace, name = split_name(values["name"])
    if namespace is not None and (not namespace or not name or "/" in name):
        raise ConfigError(f"{at('name')}: must be NAME or NAMESPACE/NAME, got {values['name']!r}")
    replicas = values["replicas"]
    engine = values.get("engine")
    if engine is not None and engine not in ENGINES:
        raise ConfigError(f"{at('engine')}: must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine is not None and replicas:
        raise ConfigError(
            f"{at('replicas')}: not together with engine {engine!r}; the engine's server is "
            "the pool's replica (kswarm run starts it)"
        )
    if engine is None and values.get("engine_args"):
        raise ConfigError(f"{at('engine_args')}: only with engine (vllm or llamacpp)")
    if not replicas and engine is None:
        raise ConfigError(f"{at('replicas')}: needs at least one base URL")
    for i, url in enumerate(replicas):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{at('replicas')}[{i}]: must be an http(s) base URL, got {url!r}")
        if url.rstrip("/").endswith("/v1"):
            raise ConfigError(f"{at('replicas')}[{i}]: give the base URL without /v1, got {url!r}")
    if len(set(replicas)) != len(replicas):
        raise ConfigError(f"{at('replicas')}: lists the same URL twice")
    mc = values["max_concurrency"]
    if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
        raise ConfigError(f"{at('max_concurrency')}: must be an integer >= 1, got {mc!r}")
    rps = values["requests_per_second"]
    if rps is not None and not _positive_number(rps):
        raise ConfigError(f"{at('requests_per_second')}: must be a number > 0, got {rps!r}")
    if values["router"] not in ROUTER_POLICIES:
        raise ConfigError(
            f"{at('router')}: must be one of {', '.join(ROUTER_POLICIES)}, got {values['router']!r}"
        )
    if values["api_key"] is not None and not isinstance(values["api_key"], str):
        raise ConfigError(f"{at('api_key')}: must be a string")
    key_file = values.get("api_key_file")
    if key_file is not None and (not isinstance(key_file, str) or not key_file):
        raise ConfigError(f"{at('api_key_file')}: must be a file path, got {key_file!r}")
    for key in ("request_timeout_seconds", "connect_timeout_seconds"):
        if not _positive_number(values[key]):
            raise ConfigError(f"{at(key)}: must be a number of seconds > 0, got {values[key]!r}")
    for key in ("stream", "return_token_ids"):
        if not isinstance(values.get(key, False), bool):
            raise ConfigError(f"{at(key)}: must be true or false, got {values[key]!r}")
    choice = values.get("tool_choice", "auto")
    if choice not in TOOL_CHOICES:
        raise ConfigError(f"{at('tool_choice')}: must be one of auto, required, got {choice!r}")
    for key, low in (("context_window", 256), ("max_output_tokens", 1)):
        n = values.get(key)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < low):
            raise ConfigError(f"{at(key)}: must be an integer >= {low}, got {n!r}")
    if not isinstance(values.get("tool_calls_in_content", False), bool):
        raise ConfigError(
            f"{at('tool_calls_in_content')}: must be true or false, "
            f"got {values['tool_calls_in_content']!r}"
        )


def _positive_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value > 0
        and not math.isinf(value)
    )
