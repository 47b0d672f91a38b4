"""A worker's pools file (on Kubernetes the ConfigMap the operator writes) and the API key
files its pools name, followed while the worker runs."""

from __future__ import annotations

import asyncio
import logging

from kswarm.errors import ConfigError
from kswarm.llm.pools import PoolConfig, parse_pools_text, with_api_key
from kswarm.workflows.pool_workers import PoolWorkers

__all__ = ["PoolsFile", "follow_pools_file"]

log = logging.getLogger(__name__)


class PoolsFile:
    """A worker's pools file and the API key files its pools name, read as one.

    :meth:`read` gives the pools to serve whenever something changed since the last read: the
    document's content (compared, not the file's times or inode: a ConfigMap volume swaps a
    symlink to a new directory) or the key in an ``apiKeyFile`` (a rotated key). The kubelet
    updates a mounted Secret and a mounted ConfigMap independently, so a pool's entry may come
    before its key file: such a pool is left out (a pool already served keeps the config it has)
    with one log line naming the pool and the file, and is served from the first read that finds
    the file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.waiting: dict[str, str] = {}
        """Pools left out, or kept as they were, for want of their key file -> why."""
        self._text: bytes | None = None
        self._listed: tuple[PoolConfig, ...] = ()
        """The document's pools, their key files unread."""
        self._served: dict[str, PoolConfig] | None = None
        """What the last read gave, by name; ``None`` before the first read."""

    def read(self) -> list[PoolConfig] | None:
        """The pools to serve now; ``None`` when that has not changed since the last read.

        Raises :class:`OSError` when the document cannot be read and :class:`ConfigError` when
        it is invalid; the last good document's key files are still followed after that.
        """
        with open(self.path, "rb") as f:
            text = f.read()
        if text != self._text:
            self._text = text
            listed = tuple(parse_pools_text(text, self.path, read_keys=False))
            for pool in listed:
                if pool.engine is not None:
                    raise ConfigError(
                        f"{self.path}: pool {pool.name!r} names engine {pool.engine}: a worker "
                        "does not start model servers (kswarm run does); give it replicas"
                    )
            self._listed = listed
        elif self._served is not None and not any(p.api_key_file for p in self._listed):
            return None  # same document, no key to read again
        served = self._served or {}
        pools: list[PoolConfig] = []
        waiting: dict[str, str] = {}
        for pool in self._listed:
            try:
                pools.append(with_api_key(pool))
                continue
            except ConfigError as e:
                waiting[pool.name] = str(e)
            old = served.get(pool.name)
            if old is not None:
                pools.append(old)
            if self.waiting.get(pool.name) != waiting[pool.name]:
                what = "keeps its current config" if old is not None else "left out"
                log.warning(
                    "pool %s %s until its API key file can be read: %s",
                    pool.name,
                    what,
                    waiting[pool.name],
                )
        for name in self.waiting.keys() - waiting.keys():
            if any(p.name == name for p in self._listed):
                log.info("pool %s: its API key file can be read now", name)
        self.waiting = waiting
        if self._served is not None and pools == list(self._served.values()):
            return None
        self._served = {p.name: p for p in pools}
        return pools


async def follow_pools_file(
    pools_file: PoolsFile, pool_workers: PoolWorkers, *, interval: float
) -> None:
    """Every ``interval`` seconds, read ``pools_file``; when its pools changed, apply them.

    A missing or invalid file keeps the pools running as they are (and says so once, until the
    file changes again). Runs until cancelled.
    """
    complaint: str | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            pools = await asyncio.to_thread(pools_file.read)
        except OSError as e:
            if complaint != str(e):
                log.warning("pools file unreadable, keeping the current pools: %s", e)
            complaint = str(e)
            continue
        except ConfigError as e:
            if complaint != str(e):
                log.error("pools file invalid, keeping the current pools: %s", e)
            complaint = str(e)
            continue
        if pools is None:
            continue
        try:
            await pool_workers.apply(pools)
        except Exception as e:  # a worker that cannot be built: same, keep what runs
            log.error("pools not applied, keeping the current pools: %s: %s", type(e).__name__, e)
        else:
            complaint = None
