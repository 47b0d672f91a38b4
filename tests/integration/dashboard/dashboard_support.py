"""Values shared by the dashboard tests and their fixtures (imported by name, never as conftest)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["FilledLedger", "McpLedger", "free_port"]


@dataclass(frozen=True)
class FilledLedger:
    url: str
    swarm: str
    single: str
    failed: str
    critical_steps: dict[str, int]
    stages: dict[str, int]


@dataclass(frozen=True)
class McpLedger:
    url: str
    uid: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
