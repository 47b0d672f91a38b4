"""Fixtures shared by every test tree.

``temporal``: one real Temporal dev server for the session, started the first time a test asks
for it and shared by every folder (each test uses its own task queue and workflow ids). A test
that stops or restarts its server starts a private one with ``kswarm.devserver.start_dev_server``
in its own ``tmp_path`` instead (the e2e backend does: it owns its server's lifetime).

``postgres_url``: a real PostgreSQL for the session. ``KSWARM_TEST_POSTGRES_URL`` names one that
is already running (``.ci/run`` starts one cluster for the whole run with ``hack/pg.sh``);
without it, a throwaway cluster starts in a temporary directory and stops at the end. It is
never skipped: when PostgreSQL cannot start, the tests that need it error with the reason.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kswarm.devserver import DevServer, start_dev_server

REPO = Path(__file__).resolve().parents[1]
PG_SH = REPO / "hack" / "pg.sh"


def pg_sh(command: str, directory: Path, *, timeout: float = 120) -> str:
    """Run ``hack/pg.sh COMMAND DIR``; its last line of output, or an error with its stderr."""
    try:
        done = subprocess.run(
            ["bash", str(PG_SH), command, str(directory)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"hack/pg.sh {command} took more than {timeout:.0f}s") from e
    if done.returncode != 0:
        raise RuntimeError(
            f"hack/pg.sh {command} {directory} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a running PostgreSQL database for this test session."""
    given = os.environ.get("KSWARM_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    # Not pytest's tmp_path: its directories are private to this user, and PostgreSQL may have
    # to run as another one (the postgres user, when the tests run as root).
    directory = Path(tempfile.mkdtemp(prefix="kswarm-pg-"))
    try:
        url = pg_sh("start", directory)
    except BaseException:
        with contextlib.suppress(Exception):  # keep the reason start failed, not stop's
            pg_sh("stop", directory)
        raise
    try:
        yield url
    finally:
        pg_sh("stop", directory)


@pytest.fixture(scope="session")
async def temporal(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    """The session's Temporal dev server."""
    async with start_dev_server(tmp_path_factory.mktemp("temporal")) as server:
        yield server
