"""The workers' pools ConfigMap and pool-keys Secret, kept in step with the ModelPool objects.

Workers mount the ConfigMap ``kswarm-pools`` (key ``pools.yaml``) of the operator's own
namespace and read their pools from it. The operator owns that ConfigMap:
:class:`PoolPublisher` lists every ModelPool it serves, reads their API keys, builds the
document (``pools_document``) and writes it when it changed, at start, after any ModelPool
event (create, change, delete, status) and every ``KSWARM_POOLS_RESYNC`` seconds. A worker
notices the new file within seconds and starts, changes or stops its pool workers.

A ConfigMap is no place for a secret, so API keys travel beside it, as Argo and kagent pass
credentials: the publisher reads each pool's ``spec.apiKeySecret`` (:func:`read_api_keys`) and
writes the keys into one Secret of its own namespace, ``kswarm-pool-keys``, one data key per
pool, ``NAMESPACE.NAME``. Workers mount that Secret at ``/etc/kswarm/pool-keys``
(``KSWARM_POOL_KEYS_DIR``; deploy/worker.yaml mounts it there), and a pool's entry says
``apiKeyFile: /etc/kswarm/pool-keys/NAMESPACE.NAME``. New and rotated keys reach the Secret
before the ConfigMap names them (and on every resync); the keys of removed pools leave it after
the ConfigMap no longer lists them, so a worker never holds a pool whose key file is gone. The
workers' ServiceAccount reads no Secret; the kubelet mounts it. A pool whose key the operator
cannot read (missing Secret or key, no RBAC) or cannot pass on (``kswarm-pool-keys`` not
writable) is left out of the document, with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from kswarm.errors import ConfigError
from kswarm.llm.pools import qualified_name
from kswarm.operator import deployments as children
from kswarm.operator.bodies import ModelPool
from kswarm.operator.kube import KubeApi, KubeError, KubeNotFound, KubeRefused, KubeRetryable
from kswarm.operator.pools_document import (
    DEFAULT_KEYS_DIR,
    PoolLeftOut,
    PoolsDocument,
    api_key_ref,
    build_document,
    load_static_pools,
    report,
)

__all__ = [
    "CONFIGMAP_KEY",
    "DEFAULT_CONFIGMAP",
    "DEFAULT_KEYS_SECRET",
    "PoolPublisher",
    "read_api_keys",
]

log = logging.getLogger(__name__)

DEFAULT_CONFIGMAP = "kswarm-pools"
CONFIGMAP_KEY = "pools.yaml"
DEFAULT_KEYS_SECRET = "kswarm-pool-keys"
"""The Secret of the pools' API keys, beside the ConfigMap."""
GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "modelpools"
LABELS = {
    "app.kubernetes.io/name": "kswarm-pools",
    "app.kubernetes.io/part-of": "kswarm",
    children.LABEL_MANAGED_BY: children.MANAGED_BY,
}
KEYS_LABELS = {**LABELS, "app.kubernetes.io/name": DEFAULT_KEYS_SECRET}


async def read_api_keys(
    api: KubeApi, model_pools: Iterable[ModelPool]
) -> dict[str, str | PoolLeftOut]:
    """The API key of every ModelPool that names ``spec.apiKeySecret`` (see :data:`ApiKeys`).

    A Secret that is missing, lacks the key, holds an empty key or may not be read makes a
    :class:`PoolLeftOut` naming ``spec.apiKeySecret`` and the Secret; an API server that does
    not answer raises :class:`KubeRetryable` (the pass is tried again, nothing is left out).
    """
    keys: dict[str, str | PoolLeftOut] = {}
    for obj in model_pools:
        meta = obj.get("metadata") or {}
        ref = api_key_ref(obj)
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
        keys' Secret and the ConfigMap if they changed (or, with ``force``, in any case: a
        resync repairs objects edited or deleted by hand, and writing the same data again
        changes nothing on the server).

        The order keeps every pool a worker may read beside its key file: new and rotated keys
        reach the Secret before the ConfigMap names them, and the key of a pool that left the
        document leaves the Secret only after the ConfigMap (a worker that still lists the pool
        keeps its key). After an operator restart the first pass cannot keep keys it has not
        written itself (it may not read that Secret), so those go with that first write.
        """
        listed = await self.api.list_objects(GROUP, VERSION, PLURAL, self.watch_namespaces)
        objects = cast(list[ModelPool], listed)  # checked by the API server against the CRD
        static = self._static_pools()
        keys = await read_api_keys(self.api, objects)
        doc = build_document(objects, static, keys=keys, keys_dir=self.keys_dir)
        # New and rotated keys go before the ConfigMap names them; the keys of pools that left
        # stay until the ConfigMap no longer lists those pools.
        staged = {**(self._written_keys or {}), **doc.keys}
        refused = await self._write_keys(staged, force=force)
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
        if refused is None and staged != dict(doc.keys):
            await self._write_keys(doc.keys, force=False)
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
