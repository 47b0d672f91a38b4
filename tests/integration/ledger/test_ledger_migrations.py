"""Alembic migrations on SQLite and PostgreSQL: round trips, drift, the documented commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from kswarm.errors import LedgerError
from kswarm.ledger import engines, migrating, models

REPO = Path(__file__).resolve().parents[3]
TABLES = {"jobs", "agents", "stages", "messages", "model_calls", "tool_calls"}


def _tables(url: str) -> set[str]:
    engine = create_engine(engines.sync_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> None:
    engine = create_engine(engines.sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def test_migrations_upgrade_downgrade_and_upgrade_again_without_drift(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    assert migrating.current(url) is None

    migrating.upgrade(url)
    assert migrating.current(url) == migrating.head()
    assert _tables(url) == TABLES
    migrating.check(url)

    migrating.downgrade(url, "base")
    assert migrating.current(url) is None
    assert _tables(url) == set()

    migrating.upgrade(url)
    assert _tables(url) == TABLES
    migrating.check(url)


def test_models_and_head_revision_name_the_same_tables() -> None:
    assert set(models.Base.metadata.tables) == TABLES


def test_check_reports_drift_when_the_schema_lacks_an_index(empty_database_url: str) -> None:
    migrating.upgrade(empty_database_url)
    _execute(empty_database_url, "DROP INDEX ix_jobs_name")

    with pytest.raises(migrating.SchemaDrift, match="ix_jobs_name"):
        migrating.check(empty_database_url)


def test_check_refuses_a_database_behind_head_and_says_how_to_upgrade(
    empty_database_url: str,
) -> None:
    with pytest.raises(LedgerError, match="kswarm db upgrade") as caught:
        migrating.check(empty_database_url)
    assert not isinstance(caught.value, migrating.SchemaDrift)


def test_migrations_folder_is_found_beside_the_package() -> None:
    found = migrating.migrations_dir()
    assert found == REPO / "migrations"
    assert (found / "versions").is_dir()


def test_alembic_check_runs_from_the_repo_root(database_url: str) -> None:
    """The documented command: ``KSWARM_DATABASE_URL=... alembic check`` in the repo root."""
    alembic = Path(sys.executable).parent / "alembic"
    done = subprocess.run(
        [str(alembic), "check"],
        cwd=REPO,
        env={**os.environ, "KSWARM_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "No new upgrade operations detected" in done.stdout


def test_replicas_upgrading_postgresql_at_the_same_time_all_succeed(
    fresh_postgres_url: str,
) -> None:
    url = fresh_postgres_url
    script = "import sys; from kswarm.ledger import migrating; migrating.upgrade(sys.argv[1])"
    replicas = [
        subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=120)[1] for p in replicas]

    assert [p.returncode for p in replicas] == [0] * 3, errors
    assert migrating.current(url) == migrating.head()
    migrating.check(url)


def _upgrade_in_child(url: str) -> None:
    migrating.upgrade(url)


def test_processes_that_migrate_one_new_sqlite_file_at_once_take_turns(tmp_path: Path) -> None:
    """Two ``kswarm run`` started together both migrate the same new ledger file."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for i in range(4):
        url = f"sqlite:///{tmp_path / f'race{i}' / 'ledger.db'}"
        procs = [ctx.Process(target=_upgrade_in_child, args=(url,)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        assert migrating.current(url) == migrating.head()


def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(engines.sync_url(url))
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(engines.sync_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_0004_adds_side_effects_and_server_to_tool_calls_keeping_existing_rows(
    empty_database_url: str,
) -> None:
    """A ledger at 0003 with a tool call upgrades to 0004: the call keeps its values and gets
    NULL for both new columns (nothing rewritten); a new call stores them; the downgrade
    drops them again and keeps the calls."""
    url = empty_database_url
    migrating.upgrade(url, "0003")
    assert {"side_effects", "server"}.isdisjoint(_columns(url, "tool_calls"))
    _execute(
        url,
        "INSERT INTO jobs (uid, namespace, name, mode, spec, phase, created_at, "
        "tool_calls_reserved, tokens_input, tokens_output) VALUES "
        "('j', 'default', 'j', 'single', '{}', 'Running', CURRENT_TIMESTAMP, 0, 0, 0)",
    )
    insert = (
        "INSERT INTO tool_calls (key, job_uid, agent_id, step, index, tool, arguments, status, "
        "attempts, deduplicated, started_at{extra}) VALUES "
        "('{key}', 'j', 'j/single', 1, {i}, 'time__get_current_time', '{{}}', 'succeeded', "
        "1, 0, CURRENT_TIMESTAMP{values})"
    )
    if url.startswith("sqlite"):
        insert = insert.replace(" index,", ' "index",')
    _execute(url, insert.format(key="j/single/1/0", i=0, extra="", values=""))

    migrating.upgrade(url, "0004")
    assert migrating.current(url) == "0004" == migrating.head()
    assert {"side_effects", "server"} <= _columns(url, "tool_calls")
    _execute(
        url,
        insert.format(
            key="j/single/1/1", i=1, extra=", side_effects, server", values=", false, 'time'"
        ),
    )
    rows = _rows(url, "SELECT key, side_effects, server FROM tool_calls ORDER BY key")
    assert rows == [("j/single/1/0", None, None), ("j/single/1/1", False, "time")]
    migrating.check(url)

    migrating.downgrade(url, "0003")
    assert {"side_effects", "server"}.isdisjoint(_columns(url, "tool_calls"))
    assert [r[0] for r in _rows(url, "SELECT key FROM tool_calls ORDER BY key")] == [
        "j/single/1/0",
        "j/single/1/1",
    ]
