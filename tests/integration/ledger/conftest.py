"""Ledgers on both databases the platform supports: SQLite (a file) and a real PostgreSQL.

``ledger`` is parametrized over ``sqlite`` and ``postgresql``; both databases are migrated
with the real Alembic revisions once per session. PostgreSQL tests run in a database of their
own on the session's cluster (``postgres_url``), so a cluster shared through
``KSWARM_TEST_POSTGRES_URL`` is left as it was found. ``pg_cluster`` is a private cluster that
tests may restart.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from kswarm.ledger import Ledger, migrating

REPO = Path(__file__).resolve().parents[3]
PG_SH = REPO / "hack" / "pg.sh"
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]


def _pg_sh(command: str, directory: Path) -> str:
    done = subprocess.run(
        ["bash", str(PG_SH), command, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hack/pg.sh {command} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@dataclass
class PgCluster:
    """A PostgreSQL cluster of this test module's own, started with ``hack/pg.sh``."""

    directory: Path
    url: str

    def restart(self) -> None:
        """Stop (fast) and start again, same port and data: every connection is cut."""
        _pg_sh("restart", self.directory)


class Databases:
    """Creates and drops databases on the session's PostgreSQL cluster."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        u = make_url(self.server_url)
        return psycopg.connect(
            host=u.host, port=u.port, user=u.username, password=u.password,
            dbname=u.database or "postgres", autocommit=True,
        )  # fmt: skip

    def create(self, prefix: str = "kswarm_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self._admin() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def pg_databases(postgres_url: str) -> Iterator[Databases]:
    databases = Databases(postgres_url)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def migrated_urls(
    pg_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """One database per backend, upgraded to head, shared by the session's ledger tests."""
    urls = {
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}",
        "postgresql": pg_databases.create("kswarm_ledger"),
    }
    for url in urls.values():
        migrating.upgrade(url)
    return urls


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, migrated_urls: dict[str, str]) -> str:
    return migrated_urls[backend]


@pytest.fixture
def empty_database_url(backend: str, pg_databases: Databases, tmp_path: Path) -> str:
    """A database with no tables at all, for migration tests."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return pg_databases.create("kswarm_empty")


@pytest.fixture
def fresh_postgres_url(pg_databases: Databases) -> str:
    """An empty PostgreSQL database of this test's own."""
    return pg_databases.create("kswarm_fresh")


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    opened = await Ledger.connect(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def job_uid(ledger: Ledger) -> str:
    """A fresh running job in ``ledger``."""
    uid = f"job-{uuid.uuid4().hex[:12]}"
    await ledger.upsert_job(
        uid=uid, namespace="tests", name=uid, mode="swarm", spec={"task": "test"}
    )
    return uid


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster (migrated to head) that a test may restart."""
    directory = Path(tempfile.mkdtemp(prefix="kswarm-pg-restart-"))
    try:
        url = _pg_sh("start", directory)
        migrating.upgrade(url)
        yield PgCluster(directory=directory, url=url)
    finally:
        _pg_sh("stop", directory)
