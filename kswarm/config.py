"""Settings from the environment, for every long-running part (worker, operator, dashboard).

KSWARM_TEMPORAL_ADDRESS   Temporal frontend, default ``127.0.0.1:7233``
KSWARM_TEMPORAL_NAMESPACE Temporal namespace, default ``default``
KSWARM_DATABASE_URL       ledger database URL, default SQLite under KSWARM_HOME
KSWARM_HOME               state of the embedded stack, default ``~/.kswarm``
KSWARM_POOLS_FILE         YAML file of model pools (see ``kswarm.llm.pools``); a worker reads it
                          again when its content changes
KSWARM_POOLS_POLL_SECONDS seconds between two looks at that file (and the tools file), default 3
KSWARM_TOOLS_FILE         YAML file of MCP tool servers (see ``kswarm.tools.servers``); a worker
                          reads it again when its content changes
KSWARM_METRICS_PORT       Prometheus port of the worker (0: off)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "kswarm_home"]


def kswarm_home() -> Path:
    home = Path(os.environ.get("KSWARM_HOME") or Path.home() / ".kswarm")
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True, kw_only=True)
class Settings:
    temporal_address: str = "127.0.0.1:7233"
    """Temporal frontend ``host:port``."""
    temporal_namespace: str = "default"
    """Temporal namespace of the workflows."""
    database_url: str | None = None
    """Ledger URL; ``None`` means SQLite under ``KSWARM_HOME``."""
    pools_file: str | None = None
    """YAML file of model pools."""
    pools_poll_seconds: float = 3.0
    """Seconds between two reads of ``pools_file`` (and ``tools_file``) by a running worker."""
    tools_file: str | None = None
    """YAML file of MCP tool servers whose tools the worker offers."""
    metrics_port: int = 0
    """Port of the Prometheus endpoint; 0 turns it off."""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            temporal_address=env.get("KSWARM_TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            temporal_namespace=env.get("KSWARM_TEMPORAL_NAMESPACE", "default"),
            database_url=env.get("KSWARM_DATABASE_URL") or None,
            pools_file=env.get("KSWARM_POOLS_FILE") or None,
            pools_poll_seconds=float(env.get("KSWARM_POOLS_POLL_SECONDS", "3") or 3),
            tools_file=env.get("KSWARM_TOOLS_FILE") or None,
            metrics_port=int(env.get("KSWARM_METRICS_PORT", "0") or 0),
        )
