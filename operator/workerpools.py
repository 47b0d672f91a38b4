"""The workers' pools document, kept in step with the ModelPool objects.

Workers read their pools from one YAML document (the format of ``kswarm.llm.pools``), mounted
from the ConfigMap ``kswarm-pools`` (key ``pools.yaml``) in the operator's own namespace. The
operator owns that ConfigMap: :class:`PoolPublisher` lists every ModelPool it serves, builds the
document (:func:`build_document`) and writes it when it changed, at start, after any ModelPool
event (create, change, delete, status) and every ``KSWARM_POOLS_RESYNC`` seconds. A worker
notices the new file within seconds and starts, changes or stops its pool workers.

Each ModelPool becomes one entry named ``NAMESPACE/NAME``, so two namespaces may both have a
pool ``fast``: their model calls run on ``kswarm-pool-team-a/fast`` and
``kswarm-pool-team-b/fast``. A SwarmJob in ``team-a`` that names ``fast`` is started with the
pool ``team-a/fast`` (see ``swarmjobs.resolve_pools``). An entry carries:

* ``replicas``: the Service URL of a managed or simulator pool (``deployments.service_url``),
  the base URL of ``spec.endpoint`` (without ``/v1``) for an endpoint pool;
* ``model``, ``maxConcurrency``, ``rateLimit``, ``router``, ``stream`` and the options for
  real servers (``toolChoice``, ``contextWindow``, ``toolCallsInContent``,
  ``maxOutputTokens``) from the spec;
* ``apiKeyFile`` for a pool with ``spec.apiKeySecret``: where the workers find its key.

A ConfigMap is no place for a secret, so API keys travel beside it, as Argo and kagent pass
credentials: the publisher reads each pool's ``spec.apiKeySecret`` and writes the keys into one
Secret of its own namespace, ``kswarm-pool-keys``, one data key per pool, ``NAMESPACE.NAME``
(:func:`key_name`; a namespace has no ``.``, so the split is unambiguous). Workers mount that
Secret at ``/etc/kswarm/pool-keys`` (``KSWARM_POOL_KEYS_DIR``; deploy/worker.yaml mounts it
there), and a pool's entry says ``apiKeyFile: /etc/kswarm/pool-keys/NAMESPACE.NAME``. The Secret
is written before the ConfigMap, when its data changed (and on every resync); the keys of
removed pools leave it. The workers' ServiceAccount reads no Secret; the kubelet mounts it.

A managed pool is listed before its replicas are ready (its Service name never changes, and a
worker that polls its queue early only makes calls that wait and retry). A ModelPool that
cannot be served is left out and its reason is logged and kept in :attr:`PoolsDocument.left_out`,
so a job that names it waits with that reason: an endpoint pool without ``spec.endpoint``, a pool
being deleted, a value the workers would refuse, or a ``spec.apiKeySecret`` the operator cannot
read (missing Secret or key, no RBAC) or cannot pass on (``kswarm-pool-keys`` not writable).

Pools of ``KSWARM_STATIC_POOLS_FILE`` (names without a namespace, such as the cluster's
``default`` pool) are copied into the document first, as they are (an ``apiKeyFile`` of theirs
is a file the workers have; the operator does not read it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from kswarm.errors import ConfigError
from kswarm.llm.pools import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_ROUTER,
    load_pools,
    load_pools_file,
    pool_entry,
    qualified_name,
)
from kswarm.operator import deployments as children
from kswarm.operator.kube import KubeApi, KubeError, KubeNotFound, KubeRefused, KubeRetryable

__all__ = [
    "CONFIGMAP_KEY",
    "DEFAULT_CONFIGMAP",
    "DEFAULT_KEYS_DIR",
    "DEFAULT_KEYS_SECRET",
    "PoolLeftOut",
    "PoolPublisher",
    "PoolsDocument",
    "build_document",
    "key_name",
    "load_static_pools",
    "model_pool_entry",
    "read_api_keys",
    "report",
]

log = logging.getLogger(__name__)

DEFAULT_CONFIGMAP = "kswarm-pools"
CONFIGMAP_KEY = "pools.yaml"
DEFAULT_KEYS_SECRET = "kswarm-pool-keys"
"""The Secret of the pools' API keys, beside the ConfigMap."""
DEFAULT_KEYS_DIR = "/etc/kswarm/pool-keys"
"""Where workers mount that Secret (deploy/worker.yaml); ``apiKeyFile`` paths start here."""
DEFAULT_SECRET_KEY = "api-key"
"""The key of ``spec.apiKeySecret`` when it names none (the CRD's default)."""
MAX_KEY_NAME = 253
"""The longest data key a Secret may have."""
GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "modelpools"
HEADER = (
    "# Written by the kswarm operator from the ModelPool objects (NAMESPACE/NAME) and its\n"
    "# static pools; edits here are overwritten. Read by `kswarm worker` (KSWARM_POOLS_FILE).\n"
)
LABELS = {
    "app.kubernetes.io/name": "kswarm-pools",
    "app.kubernetes.io/part-of": "kswarm",
    children.LABEL_MANAGED_BY: children.MANAGED_BY,
}
KEYS_LABELS = {**LABELS, "app.kubernetes.io/name": DEFAULT_KEYS_SECRET}


class PoolLeftOut(Exception):
    """A ModelPool that the workers cannot serve; the message says why."""


ApiKeys = Mapping[str, str | PoolLeftOut]
"""``NAMESPACE/NAME`` of a ModelPool with ``spec.apiKeySecret`` -> its key, or why there is none."""


# --------------------------------------------------------------------------- the document


def model_pool_entry(pool: Mapping[str, Any]) -> dict[str, Any]:
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
        replicas = [_base_url(endpoint)]
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
    for key in ("toolChoice", "contextWindow", "toolCallsInContent", "maxOutputTokens"):
        if key in spec:
            entry[key] = spec[key]
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


def _base_url(endpoint: str) -> str:
    """``http://host:8000/v1/`` -> ``http://host:8000``: the form a pool's replicas take."""
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


def _api_key_ref(pool: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(Secret name, key)`` of a ModelPool's ``spec.apiKeySecret``; ``None`` without one."""
    spec = pool.get("spec")
    ref = spec.get("apiKeySecret") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping):
        return None
    return str(ref.get("name") or ""), str(ref.get("key") or DEFAULT_SECRET_KEY)


async def read_api_keys(
    api: KubeApi, model_pools: Iterable[Mapping[str, Any]]
) -> dict[str, str | PoolLeftOut]:
    """The API key of every ModelPool that names ``spec.apiKeySecret`` (see :data:`ApiKeys`).

    A Secret that is missing, lacks the key, holds an empty key or may not be read makes a
    :class:`PoolLeftOut` naming ``spec.apiKeySecret`` and the Secret; an API server that does
    not answer raises :class:`KubeRetryable` (the pass is tried again, nothing is left out).
    """
    keys: dict[str, str | PoolLeftOut] = {}
    for obj in model_pools:
        meta = obj.get("metadata") or {}
        ref = _api_key_ref(obj)
        namespace, name = meta.get("namespace"), meta.get("name")
        if ref is None or meta.get("deletionTimestamp") or not namespace or not name:
            continue
        secret, key = ref
        where = f"spec.apiKeySecret: Secret {namespace}/{secret}"
        try:
            data = await api.read_secret_data(str(namespace), secret)
        except KubeRetryable:
            raise
        except KubeNotFound:
            keys[qualified_name(namespace, name)] = PoolLeftOut(f"{where} does not exist")
            continue
        except KubeError as e:
            keys[qualified_name(namespace, name)] = PoolLeftOut(
                f"{where} cannot be read by the operator (HTTP {e.status}): grant it get on "
                "that Secret, as deploy/pool-secrets.yaml shows"
            )
            continue
        keys[qualified_name(namespace, name)] = _key_value(data, key, where)
    return keys


def _key_value(data: Mapping[str, bytes], key: str, where: str) -> str | PoolLeftOut:
    if key not in data:
        return PoolLeftOut(f"{where} has no key {key!r}")
    try:
        value = data[key].decode().strip()
    except UnicodeDecodeError:
        return PoolLeftOut(f"{where}: the value of {key!r} is not UTF-8 text")
    return value or PoolLeftOut(f"{where}: the value of {key!r} is empty")


def build_document(
    model_pools: Iterable[Mapping[str, Any]],
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
            if _api_key_ref(obj) is not None:
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


# --------------------------------------------------------------------------- the publisher


class PoolPublisher:
    """Keeps the ConfigMap ``namespace/name`` equal to the document of the current ModelPools,
    and the Secret ``namespace/keys_secret`` equal to their API keys.

    :meth:`run` loops until cancelled: it publishes at once, then after every :meth:`poke`
    (a ModelPool event; bursts are coalesced) and every ``resync_seconds``. A failed pass is
    logged and tried again after ``retry_seconds``. :attr:`document` is the document of the
    last pass that reached the API server.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str = DEFAULT_CONFIGMAP,
        keys_secret: str = DEFAULT_KEYS_SECRET,
        keys_dir: str = DEFAULT_KEYS_DIR,
        watch_namespaces: Sequence[str] = (),
        static_file: str | None = None,
        resync_seconds: float = 60.0,
        retry_seconds: float = 2.0,
        debounce_seconds: float = 0.1,
    ) -> None:
        self.api = api
        self.namespace, self.name = namespace, name
        self.keys_secret, self.keys_dir = keys_secret, keys_dir
        self.watch_namespaces = tuple(watch_namespaces)
        self.static_file = static_file
        self.resync_seconds = resync_seconds
        self.retry_seconds = retry_seconds
        self.debounce_seconds = debounce_seconds
        self.document: PoolsDocument | None = None
        self.writes = 0
        self._written: str | None = None
        self._written_keys: dict[str, str] | None = None
        self._keys_refused: str | None = None
        self._static: list[dict[str, Any]] = []
        self._static_error: str | None = None
        self._logged: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._wake.set()
        self._begun = self._done = 0
        self._passed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something changed: publish again soon."""
        self._wake.set()

    async def refresh(self, wait_seconds: float) -> PoolsDocument | None:
        """Ask for a pass and wait (at most ``wait_seconds``) until it has ended; the document."""
        target = self._begun + 1  # the first pass to begin after this poke
        self.poke()
        async with self._passed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._passed.wait_for(lambda: self._done >= target), wait_seconds
                )
        return self.document

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="pool-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.resync_seconds)
                resync = False
            except TimeoutError:
                resync = True
            await asyncio.sleep(self.debounce_seconds)
            self._wake.clear()
            self._begun += 1
            failed = False
            try:
                await self.publish(force=resync)
            except KubeError as e:
                failed = True
                log.warning(
                    "pools not published configmap=%s/%s error=%s retry_in=%ss",
                    self.namespace,
                    self.name,
                    e,
                    self.retry_seconds,
                )
            finally:
                async with self._passed:
                    self._done += 1
                    self._passed.notify_all()
            if failed:
                await asyncio.sleep(self.retry_seconds)
                self._wake.set()

    async def publish(self, *, force: bool = False) -> PoolsDocument:
        """One pass: list the ModelPools, read their API keys, build the document, write the
        keys' Secret and then the ConfigMap if they changed (or, with ``force``, in any case: a
        resync repairs objects edited or deleted by hand, and writing the same data again
        changes nothing on the server)."""
        objects = await self.api.list_objects(GROUP, VERSION, PLURAL, self.watch_namespaces)
        static = self._static_pools()
        keys = await read_api_keys(self.api, objects)
        doc = build_document(objects, static, keys=keys, keys_dir=self.keys_dir)
        refused = await self._write_keys(doc.keys, force=force)
        if refused is not None and doc.keys:
            # The workers could not find the keys: the pools that need one wait, with why.
            reason = PoolLeftOut(
                "spec.apiKeySecret: the operator cannot pass the key on to the workers "
                f"(writing Secret {self.namespace}/{self.keys_secret}: HTTP {refused.status}); "
                "grant it create and patch on that Secret, as deploy/rbac.yaml does"
            )
            keys = {k: reason for k in keys}
            doc = build_document(objects, static, keys=keys, keys_dir=self.keys_dir)
        self._logged = report(doc, self._logged)
        if force or doc.text != self._written:
            await self.api.apply_config_map(
                self.namespace, self.name, {CONFIGMAP_KEY: doc.text}, labels=LABELS
            )
            changed, self._written = doc.text != self._written, doc.text
            self.writes += 1
        else:
            changed = False
        if changed:
            log.info(
                "pools published configmap=%s/%s pools=%s left_out=%s",
                self.namespace,
                self.name,
                ",".join(doc.pools) or "-",
                ",".join(sorted(doc.left_out)) or "-",
            )
        self.document = doc
        return doc

    async def _write_keys(self, data: Mapping[str, str], *, force: bool) -> KubeRefused | None:
        """Apply the keys' Secret if its data changed (or ``force``); the refusal, if refused
        (logged once: with no pool that needs a key, a refusal costs nothing else)."""
        if not force and dict(data) == self._written_keys:
            return None
        try:
            await self.api.apply_secret(self.namespace, self.keys_secret, data, labels=KEYS_LABELS)
        except KubeRefused as e:
            if str(e) != self._keys_refused:
                log.warning(
                    "pool keys not written secret=%s/%s pools_with_keys=%s error=%s",
                    self.namespace,
                    self.keys_secret,
                    len(data),
                    e,
                )
            self._keys_refused, self._written_keys = str(e), None
            return e
        if dict(data) != self._written_keys:
            log.info(
                "pool keys published secret=%s/%s keys=%s",
                self.namespace,
                self.keys_secret,
                ",".join(data) or "-",
            )
        self._keys_refused, self._written_keys = None, dict(data)
        return None

    def _static_pools(self) -> list[dict[str, Any]]:
        """The static file's entries; the last good ones while the file is unreadable."""
        if not self.static_file:
            return []
        try:
            self._static = load_static_pools(self.static_file)
        except ConfigError as e:
            if str(e) != self._static_error:
                log.error("static pools unusable, keeping the last good ones: %s", e)
            self._static_error = str(e)
        else:
            self._static_error = None
        return self._static
