"""The event loop kswarm's processes run on: uvloop where it is installed, asyncio on request."""

from __future__ import annotations

import asyncio

import pytest

from kswarm import looping


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_runs_on_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KSWARM_EVENT_LOOP", raising=False)
    assert looping.loop_name() == "uvloop"
    assert looping.run(_loop_module()) == "uvloop"


def test_runs_on_asyncio_when_told_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSWARM_EVENT_LOOP", "asyncio")
    assert looping.loop_name() == "asyncio"
    assert looping.run(_loop_module()) == "asyncio"


def test_returns_the_result_and_raises_the_error_of_the_coroutine() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    assert looping.run(asyncio.sleep(0, result=42)) == 42
    with pytest.raises(ValueError, match="boom"):
        looping.run(fail())
