"""Helpers of the MCP tests: the servers they start and the journal of ``ledger_server.py``."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

from kswarm.tools.servers import ToolServerConfig

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ledger_server(journal: Path, name: str = "led", **options: Any) -> ToolServerConfig:
    return ToolServerConfig(
        name=name,
        command=sys.executable,
        args=("-P", str(HERE / "ledger_server.py"), str(journal)),
        **options,
    )


def time_server() -> ToolServerConfig:
    return ToolServerConfig(name="time", command=str(BIN / "mcp-server-time"))


def git_server(repo: Path) -> ToolServerConfig:
    return ToolServerConfig(
        name="git", command=str(BIN / "mcp-server-git"), args=("--repository", str(repo))
    )


def job_manifest(
    uid: str, calls: list[tuple[str, dict[str, Any]]], tools: list[str], **spec: Any
) -> dict[str, Any]:
    task = "\n".join(f"CALL {name} {json.dumps(args)}" for name, args in calls)
    return {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "SwarmJob",
        "metadata": {"name": "mcp-job", "uid": uid},
        "spec": {"task": task, "tools": tools, **spec},
    }
