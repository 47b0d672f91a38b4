"""The connections every handler shares: Temporal, the ledger and the Kubernetes API.

One :class:`Runtime` lives for the whole operator process; kopf hands it to each handler in
``memo.runtime``. Temporal and Kubernetes are connected at startup (the operator is useless
without them, so startup retries until they answer). The ledger only feeds counters into the
status, so it connects lazily and a missing database slows nothing down: the status then
carries what the workflow knows until the ledger is back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.client import Client

from kswarm.errors import LedgerError
from kswarm.ledger import JobCounters, Ledger
from kswarm.operator.kube import KubeApi
from kswarm.operator.settings import OperatorConfig
from kswarm.tools import default_registry

__all__ = ["LEDGER_RETRY_SECONDS", "Runtime", "runtime_of"]

log = logging.getLogger(__name__)

LEDGER_RETRY_SECONDS = 5.0
"""After a failed connection, the ledger is not tried again for this long."""


@dataclass
class Runtime:
    config: OperatorConfig
    temporal: Client | None = None
    kube: KubeApi | None = None
    _ledger: Ledger | None = None
    _ledger_retry_at: float = 0.0
    known_tools: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.known_tools:
            self.known_tools = self.config.known_tools or tuple(default_registry().names())

    def now(self) -> datetime:
        return self.config.clock()

    @property
    def client(self) -> Client:
        if self.temporal is None:
            raise RuntimeError("the operator is not connected to Temporal yet")
        return self.temporal

    @property
    def api(self) -> KubeApi:
        if self.kube is None:
            raise RuntimeError("the operator has no Kubernetes API client yet")
        return self.kube

    async def connect(self) -> None:
        """Connect to Temporal and load the Kubernetes credentials (raises until they work)."""
        settings = self.config.settings
        if self.temporal is None:
            self.temporal = await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
            log.info(
                "connected to temporal address=%s namespace=%s",
                settings.temporal_address,
                settings.temporal_namespace,
            )
        if self.kube is None:
            self.kube = KubeApi.from_environment()

    async def ledger(self) -> Ledger | None:
        """The ledger, connecting on first use; ``None`` while it cannot be reached."""
        if self._ledger is not None:
            return self._ledger
        if time.monotonic() < self._ledger_retry_at:
            return None
        try:
            self._ledger = await Ledger.connect(self.config.settings.database_url)
        except LedgerError as e:
            self._ledger_retry_at = time.monotonic() + LEDGER_RETRY_SECONDS
            log.warning("ledger unavailable error=%r retry_in=%ss", str(e), LEDGER_RETRY_SECONDS)
            return None
        log.info("connected to ledger url=%s", self._ledger.masked_url)
        return self._ledger

    async def counters(self, uid: str) -> JobCounters | None:
        """The ledger's counters of a job; ``None`` while the ledger is away."""
        ledger = await self.ledger()
        if ledger is None:
            return None
        try:
            return await ledger.job_counters(uid)
        except LedgerError as e:
            log.warning("ledger read failed job_uid=%s error=%r", uid, str(e))
            return None

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None
        if self.kube is not None:
            self.kube.close()
            self.kube = None
        self.temporal = None


def runtime_of(memo: Any) -> Runtime:
    """The runtime kopf carries in each handler's ``memo``."""
    rt = getattr(memo, "runtime", None)
    if not isinstance(rt, Runtime):
        raise RuntimeError("memo.runtime is not set: start the operator with kswarm.operator.main")
    return rt
