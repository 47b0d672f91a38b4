"""The ledger when its database is away: a clear error without secrets, and no lost writes."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Protocol

import pytest

from kswarm.errors import LedgerError, LedgerUnavailable
from kswarm.ledger import Ledger, ToolCallKey, migrating


class PgCluster(Protocol):
    url: str

    def restart(self) -> None: ...


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable_url() -> str:
    return f"postgresql://kswarm:s3cret-pw@127.0.0.1:{closed_port()}/kswarm"


def assert_names_server_not_password(error: LedgerUnavailable, url: str) -> None:
    port = url.rsplit(":", 1)[1].split("/")[0]
    message = str(error)
    assert "127.0.0.1" in message and port in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in error.url


async def test_connect_to_a_closed_port_raises_unavailable_naming_host_and_port(
    unreachable_url: str,
) -> None:
    with pytest.raises(LedgerUnavailable) as caught:
        await Ledger.connect(unreachable_url)

    assert_names_server_not_password(caught.value, unreachable_url)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(migrating.upgrade, id="upgrade"),
        pytest.param(migrating.current, id="current"),
        pytest.param(migrating.check, id="check"),
    ],
)
def test_migrations_against_a_closed_port_raise_unavailable(
    unreachable_url: str, action: object
) -> None:
    with pytest.raises(LedgerUnavailable) as caught:
        action(unreachable_url)  # type: ignore[operator]

    assert_names_server_not_password(caught.value, unreachable_url)


async def record(ledger: Ledger, k: ToolCallKey, failures: list[str] | None = None) -> None:
    """One tool call, as an activity would do it, retrying while the ledger is away."""
    for attempt in range(50):
        try:
            begin = await ledger.begin_tool_call(k, tool="search", arguments={"k": str(k)})
            if begin.outcome == "run":
                await ledger.finish_tool_call(k, status="succeeded", result=str(k))
            return
        except LedgerUnavailable as e:
            if failures is not None:
                failures.append(str(e))
            await asyncio.sleep(0.1 * (1 + attempt % 5))
    raise AssertionError(f"{k}: ledger stayed unavailable")


async def test_writes_survive_a_postgresql_restart_without_loss_or_doubles(
    pg_cluster: PgCluster,
) -> None:
    ledger = await Ledger.connect(pg_cluster.url)
    try:
        uid = f"restart-{uuid.uuid4().hex[:8]}"
        await ledger.upsert_job(uid=uid, namespace="tests", name=uid, mode="swarm", spec={})
        keys = [ToolCallKey(uid, f"{uid}/sub-{i % 5}", i // 5, 0) for i in range(40)]

        await asyncio.gather(*(record(ledger, k) for k in keys[:10]))
        await asyncio.to_thread(pg_cluster.restart)
        # The first write after the restart: the pool finds its connections dead and reconnects.
        first = await ledger.begin_tool_call(keys[10], tool="search", arguments={"k": "10"})
        assert (first.outcome, first.attempt) == ("run", 1)
        await ledger.finish_tool_call(keys[10], status="succeeded", result=str(keys[10]))

        # Writes going on while the server goes down and comes back.
        async def writer(some: list[ToolCallKey]) -> None:
            for k in some:
                await record(ledger, k, failures)
                await asyncio.sleep(0.05)

        failures: list[str] = []
        writers = asyncio.gather(*(writer(keys[i::6]) for i in range(11, 17)))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(pg_cluster.restart)
        await writers

        rows = await ledger.list_tool_calls(uid)
        assert sorted(r.key for r in rows) == sorted(str(k) for k in keys)
        assert {r.status for r in rows} == {"succeeded"}
        assert all(r.result == r.key for r in rows)
        counters = await ledger.job_counters(uid)
        assert counters.tool_calls_total == 40
        assert failures, "no write met the outage: the restart came too late to test anything"
    finally:
        await ledger.close()


async def test_a_database_without_tables_says_to_run_the_upgrade(empty_database_url: str) -> None:
    ledger = await Ledger.connect(empty_database_url)
    try:
        with pytest.raises(LedgerError, match="kswarm db upgrade") as writing:
            await ledger.upsert_job(uid="u", namespace="n", name="n", mode="swarm", spec={})
        with pytest.raises(LedgerError, match="kswarm db upgrade") as reading:
            await ledger.get_job("u")
        assert not isinstance(writing.value, LedgerUnavailable)
        assert not isinstance(reading.value, LedgerUnavailable)
    finally:
        await ledger.close()
