"""The workers' pools document: what the workers get from the ModelPool objects (pure).

Workers read their pools from one YAML document (the format of ``kswarm.llm.pools``); the
operator writes it (see ``workerpools``). Each ModelPool becomes one entry named
``NAMESPACE/NAME``, so two namespaces may both have a pool ``fast``: their model calls run on
``kswarm-pool-team-a/fast`` and ``kswarm-pool-team-b/fast``. A SwarmJob in ``team-a`` that names
``fast`` is started with the pool ``team-a/fast`` (see ``pool_resolution``). An entry carries:

* ``replicas``: the Service URL of a managed or simulator pool (``deployments.service_url``),
  the base URL of ``spec.endpoint`` (without ``/v1``) for an endpoint pool;
* ``model``, ``maxConcurrency``, ``rateLimit``, ``router``, ``stream`` and the options for
  real servers (``toolChoice``, ``contextWindow``, ``toolCallsInContent``,
  ``maxOutputTokens``) from the spec;
* ``apiKeyFile`` for a pool with ``spec.apiKeySecret``: where the workers find its key, the
  file ``NAMESPACE.NAME`` (:func:`key_name`; a namespace has no ``.``, so the split is
  unambiguous) of the pool-keys Secret they mount, whose data :attr:`PoolsDocument.keys` holds.

A managed pool is listed before its replicas are ready (its Service name never changes, and a
worker that polls its queue early only makes calls that wait and retry). A ModelPool that
cannot be served is left out and its reason is kept in :attr:`PoolsDocument.left_out` (and
logged once, :func:`report`), so a job that names it waits with that reason: an endpoint pool
without ``spec.endpoint``, a pool being deleted, a value the workers would refuse, or a
``spec.apiKeySecret`` whose key could not be read or passed on.

Pools of ``KSWARM_STATIC_POOLS_FILE`` (names without a namespace, such as the cluster's
``default`` pool) are copied into the document first, as they are (an ``apiKeyFile`` of theirs
is a file the workers have; the operator does not read it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kswarm.errors import ConfigError, KswarmError
from kswarm.llm.pools import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_ROUTER,
    load_pools,
    load_pools_file,
    pool_entry,
    qualified_name,
)
from kswarm.operator import deployments as children
from kswarm.operator.bodies import ModelPool

__all__ = [
    "DEFAULT_KEYS_DIR",
    "DEFAULT_SECRET_KEY",
    "ApiKeys",
    "PoolLeftOut",
    "PoolsDocument",
    "api_key_ref",
    "base_url",
    "build_document",
    "key_name",
    "load_static_pools",
    "model_pool_entry",
    "report",
]

log = logging.getLogger(__name__)

DEFAULT_KEYS_DIR = "/etc/kswarm/pool-keys"
"""Where workers mount the pool-keys Secret (deploy/worker.yaml); ``apiKeyFile`` paths start
here."""
DEFAULT_SECRET_KEY = "api-key"
"""The key of ``spec.apiKeySecret`` when it names none (the CRD's default)."""
MAX_KEY_NAME = 253
"""The longest data key a Secret may have."""
HEADER = (
    "# Written by the kswarm operator from the ModelPool objects (NAMESPACE/NAME) and its\n"
    "# static pools; edits here are overwritten. Read by `kswarm worker` (KSWARM_POOLS_FILE).\n"
)


class PoolLeftOut(KswarmError):
    """A ModelPool that the workers cannot serve; the message says why."""


ApiKeys = Mapping[str, str | PoolLeftOut]
"""``NAMESPACE/NAME`` of a ModelPool with ``spec.apiKeySecret`` -> its key, or why there is none."""


def model_pool_entry(pool: ModelPool) -> dict[str, Any]:
    """The workers' entry of one ModelPool object; :class:`PoolLeftOut` when it has none."""
    meta = pool.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name or not isinstance(namespace, str) or not namespace:
        raise PoolLeftOut("metadata.name and metadata.namespace are required")
    if meta.get("deletionTimestamp"):
        raise PoolLeftOut("the ModelPool is being deleted")
    spec = pool.get("spec")
    if not isinstance(spec, Mapping):
        raise PoolLeftOut("spec is missing")
    mode = children.pool_mode(spec)
    if mode == "endpoint":
        endpoint = spec.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise PoolLeftOut(
                "no endpoint yet: set spec.endpoint, spec.replicas (managed vLLM) or spec.simulator"
            )
        replicas = [base_url(endpoint)]
    else:
        replicas = [children.service_url(name, namespace)]
    entry: dict[str, Any] = {
        "name": qualified_name(namespace, name),
        "model": spec.get("model"),
        "replicas": replicas,
        "maxConcurrency": spec.get("maxConcurrency", DEFAULT_MAX_CONCURRENCY),
        "router": spec.get("router", DEFAULT_ROUTER),
    }
    if "stream" in spec:
        entry["stream"] = spec["stream"]
    if "toolChoice" in spec:
        entry["toolChoice"] = spec["toolChoice"]
    if "contextWindow" in spec:
        entry["contextWindow"] = spec["contextWindow"]
    if "toolCallsInContent" in spec:
        entry["toolCallsInContent"] = spec["toolCallsInContent"]
    if "maxOutputTokens" in spec:
        entry["maxOutputTokens"] = spec["maxOutputTokens"]
    rate = spec.get("rateLimit")
    if isinstance(rate, Mapping) and rate.get("requestsPerSecond") is not None:
        entry["rateLimit"] = {"requestsPerSecond": rate["requestsPerSecond"]}
    elif rate is not None and not isinstance(rate, Mapping):
        entry["rateLimit"] = rate  # refused below, with the field named
    try:
        (parsed,) = load_pools({"pools": [entry]})
    except ConfigError as e:
        field = "spec.endpoint" if mode == "endpoint" else "spec.replicas"
        message = str(e).replace("pools[0].replicas[0]", field).replace("pools[0].replicas", field)
        message = message.replace("pools[0]", "spec")
        raise PoolLeftOut(f"the workers would refuse it: {message}") from None
    return pool_entry(parsed)


def base_url(endpoint: str) -> str:
    """``http://host:8000/v1/`` -> ``http://host:8000``: the form a pool's replicas take (and
    the one the kswarm client is given)."""
    url = endpoint.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@dataclass(frozen=True)
class PoolsDocument:
    """What the workers get: the YAML text and the Secret's keys, and what it lists and leaves
    out."""

    text: str
    """The document, as written to the ConfigMap's ``pools.yaml``."""
    pools: tuple[str, ...]
    """Names of the pools it lists: static ones, then ``NAMESPACE/NAME`` of ModelPools."""
    static: tuple[str, ...] = ()
    """Names of the static pools among them."""
    left_out: Mapping[str, str] = field(default_factory=dict)
    """``NAMESPACE/NAME`` of each ModelPool left out -> why."""
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The data of the pool-keys Secret: :func:`key_name` -> the API key (never logged)."""

    def __contains__(self, key: object) -> bool:
        return key in self.pools


def key_name(namespace: str, name: str) -> str:
    """The pool-keys Secret's data key (and file name) of ModelPool ``namespace/name``."""
    return f"{namespace}.{name}"


def api_key_ref(pool: ModelPool) -> tuple[str, str] | None:
    """``(Secret name, key)`` of a ModelPool's ``spec.apiKeySecret``; ``None`` without one."""
    spec = pool.get("spec")
    ref = spec.get("apiKeySecret") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping):
        return None
    return str(ref.get("name") or ""), str(ref.get("key") or DEFAULT_SECRET_KEY)


def build_document(
    model_pools: Iterable[ModelPool],
    static: Sequence[Mapping[str, Any]] = (),
    *,
    keys: ApiKeys | None = None,
    keys_dir: str = DEFAULT_KEYS_DIR,
) -> PoolsDocument:
    """The pools document of ``static`` entries (validated already) and ModelPool objects.

    ``keys`` holds the API keys of the pools with ``spec.apiKeySecret`` (:func:`read_api_keys`);
    such a pool's entry names its file under ``keys_dir`` and its key goes to
    :attr:`PoolsDocument.keys`; a pool whose key is not there is left out. ModelPools come
    sorted by ``NAMESPACE/NAME``, so the same objects always give the same text, whatever order
    the API server listed them in.
    """
    keys = keys or {}
    entries: dict[str, dict[str, Any]] = {}
    left_out: dict[str, str] = {}
    secret_data: dict[str, str] = {}
    for obj in model_pools:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "?"), str(meta.get("name") or "?")
        key = qualified_name(namespace, name)
        try:
            entry = model_pool_entry(obj)
            if api_key_ref(obj) is not None:
                file = key_name(namespace, name)
                if len(file) > MAX_KEY_NAME:
                    raise PoolLeftOut(
                        f"spec.apiKeySecret: {file!r} is longer than {MAX_KEY_NAME} characters, "
                        "the longest key a Secret may have: give the ModelPool a shorter name"
                    )
                value = keys.get(key) or PoolLeftOut("spec.apiKeySecret: the key was not read")
                if isinstance(value, PoolLeftOut):
                    raise value
                entry["apiKeyFile"] = f"{keys_dir.rstrip('/')}/{file}"
                secret_data[file] = value
        except PoolLeftOut as e:
            left_out[key] = str(e)
            continue
        entries[key] = entry
    items = [dict(s) for s in static] + [entries[k] for k in sorted(entries)]
    text = HEADER + yaml.safe_dump({"pools": items}, sort_keys=False, default_flow_style=None)
    return PoolsDocument(
        text=text,
        pools=tuple(str(i["name"]) for i in items),
        static=tuple(str(s["name"]) for s in static),
        left_out=left_out,
        keys=dict(sorted(secret_data.items())),
    )


def report(doc: PoolsDocument, logged: Mapping[str, str]) -> dict[str, str]:
    """Log why a pool is left out, once: not again while ``logged`` (what the last call
    returned) says the same."""
    news = {k: f"left out: {v}" for k, v in doc.left_out.items()}
    for key, what in news.items():
        if logged.get(key) != what:
            log.warning("pool %s %s", key, what)
    return news


def load_static_pools(path: str) -> list[dict[str, Any]]:
    """The entries of a static pools file, validated; names must have no namespace."""
    registry = load_pools_file(path, read_keys=False)
    for pool in registry:
        if "/" in pool.name:
            raise ConfigError(
                f"static pools {path}: {pool.name!r}: a static pool's name has no namespace "
                "(NAMESPACE/NAME is how ModelPools are named)"
            )
    return [pool_entry(p) for p in registry]
