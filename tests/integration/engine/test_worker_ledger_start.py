"""``kswarm worker`` and a ledger without its tables: it never starts to spin on one.

The default SQLite ledger is upgraded by the worker itself (as ``kswarm run`` does); a
PostgreSQL ledger behind its migrations is refused at start, with exit 2 and the revision the
worker needs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import yaml
from sqlalchemy.engine import make_url

from kswarm.devserver import DevServer
from kswarm.ledger import migrating

KSWARM = str(Path(sys.executable).parent / "kswarm")


def worker_env(tmp_path: Path, temporal: DevServer, **extra: str) -> dict[str, str]:
    pools = tmp_path / "pools.yaml"
    pools.write_text(
        yaml.safe_dump({"pools": [{"name": "p", "model": "m", "replicas": ["http://127.0.0.1:9"]}]})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSWARM_")}
    return {
        **env,
        "KSWARM_HOME": str(tmp_path / "home"),
        "KSWARM_TEMPORAL_ADDRESS": temporal.address,
        "KSWARM_POOLS_FILE": str(pools),
        **extra,
    }


async def test_the_default_sqlite_ledger_is_upgraded_by_the_worker_itself(
    temporal: DevServer, tmp_path: Path
) -> None:
    env = worker_env(tmp_path, temporal, KSWARM_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [KSWARM, "--log-level", "INFO", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"sqlite:///{tmp_path / 'home' / 'ledger.db'}"
    try:
        for _ in range(120):
            await asyncio.sleep(0.5)
            assert proc.poll() is None, proc.communicate()[0]
            if (tmp_path / "home" / "ledger.db").exists() and (
                migrating.current(url) == migrating.head()
            ):
                break
        else:
            raise AssertionError("the worker never upgraded its SQLite ledger")
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    assert "no ledger tables" not in out


def test_a_postgresql_ledger_without_tables_is_refused_at_start(
    postgres_url: str, tmp_path: Path
) -> None:
    name = f"kswarm_behind_{uuid.uuid4().hex[:8]}"
    u = make_url(postgres_url)
    admin = dict(host=u.host, port=u.port, user=u.username, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = u.set(database=name).render_as_string(hide_password=False)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KSWARM_")},
            "KSWARM_HOME": str(tmp_path),
            "KSWARM_DATABASE_URL": url,
            # Nothing listens here: the worker must refuse before it ever needs Temporal.
            "KSWARM_TEMPORAL_ADDRESS": "127.0.0.1:9",
            "KSWARM_POOLS_FILE": str(tmp_path / "pools.yaml"),
        }
        (tmp_path / "pools.yaml").write_text("pools: []\n")
        done = subprocess.run(
            [KSWARM, "worker"], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 2, done.stderr
        assert f"needs revision {migrating.head()}" in done.stderr
        assert "base (no tables)" in done.stderr and "kswarm db upgrade" in done.stderr
    finally:
        with psycopg.connect(**admin) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
