"""Database URLs and engines: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL.

Users write plain URLs (``sqlite:///path``, ``postgresql://user:pw@host/db``); this module
picks the async driver, applies SQLite's pragmas, and masks passwords in every message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kswarm.errors import ConfigError

__all__ = [
    "async_url",
    "create_engine_for",
    "create_sqlite_sync_engine",
    "default_url",
    "mask",
    "sync_url",
]


def default_url() -> str:
    """``KSWARM_DATABASE_URL``, else an SQLite file under ``KSWARM_HOME``."""
    url = os.environ.get("KSWARM_DATABASE_URL")
    if url:
        return url
    home = Path(os.environ.get("KSWARM_HOME") or Path.home() / ".kswarm")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'ledger.db'}"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"KSWARM_DATABASE_URL: not a database URL: {url!r}") from e


def mask(url: str) -> str:
    """The URL with its password hidden, safe for logs and error messages."""
    try:
        return _parse(url).render_as_string(hide_password=True)
    except ConfigError:
        return "<invalid URL>"


def is_sqlite(url: str) -> bool:
    return _parse(url).get_backend_name() == "sqlite"


def async_url(url: str) -> URL:
    u = _parse(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return u.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return u.set(drivername="postgresql+psycopg")
    raise ConfigError(
        f"KSWARM_DATABASE_URL: unsupported database {backend!r} in {mask(url)}; "
        "use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
    )


def sync_url(url: str) -> URL:
    """URL for synchronous tools (Alembic): sqlite or psycopg 3."""
    u = async_url(url)
    return u.set(drivername="sqlite" if u.get_backend_name() == "sqlite" else "postgresql+psycopg")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, emit BEGIN (see ``_sqlite_begin_immediate``).
    dbapi_conn.isolation_level = None


def _sqlite_begin_immediate(conn: Any) -> None:
    # A writer takes SQLite's write lock when its transaction begins, so a second process that
    # writes the same file waits (busy_timeout) instead of failing with "database is locked"
    # when a deferred transaction tries to upgrade from reading to writing.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file(u: URL) -> None:
    db = u.database or ""
    if db and db != ":memory:":
        Path(db).parent.mkdir(parents=True, exist_ok=True)


def create_sqlite_sync_engine(url: str, *, pool_size: int = 2, writer: bool = False) -> Engine:
    """A synchronous engine for an SQLite ``url``, with the same pragmas as the async one,
    for connections used on threads of their own (``writer``: ``BEGIN IMMEDIATE``)."""
    u = sync_url(url)
    if u.get_backend_name() != "sqlite":
        raise ConfigError(f"not an SQLite URL: {mask(url)}")
    _sqlite_file(u)
    engine = create_engine(
        u,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    if writer:
        event.listen(engine, "connect", _sqlite_autocommit_driver)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def create_engine_for(url: str, *, pool_size: int = 10, writer: bool = False) -> AsyncEngine:
    """An async engine for ``url``. ``writer`` makes SQLite transactions ``BEGIN IMMEDIATE``
    (the ledger's single writer uses one; readers keep WAL's concurrent deferred reads)."""
    u = async_url(url)
    if u.get_backend_name() == "sqlite":
        _sqlite_file(u)
        engine = create_async_engine(u, pool_size=pool_size, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if writer:
            event.listen(engine.sync_engine, "connect", _sqlite_autocommit_driver)
            event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_async_engine(
        u,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )
