"""The event loop of kswarm's long-running processes: uvloop where it is installed.

A worker of a 100-agent swarm turns its event loop thousands of times a second: every workflow
activation, every local activity and every model call is handed between the Temporal core's
threads and Python through the loop. uvloop's loop turns are cheaper than asyncio's, which
shortens the time from one model answer to the agent's next call (see ``bench/bench_swarm.py``).

``KSWARM_EVENT_LOOP=asyncio`` keeps the standard loop, e.g. to rule uvloop out when debugging.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["loop_name", "run"]

T = TypeVar("T")


def _uvloop() -> Any:
    if os.environ.get("KSWARM_EVENT_LOOP", "uvloop").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows): the standard loop
        return None
    return uvloop


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: what :func:`run` runs on here."""
    return "uvloop" if _uvloop() is not None else "asyncio"


def run(main: Coroutine[Any, Any, T]) -> T:
    """:func:`asyncio.run` on uvloop's loop when it can be used, else on asyncio's own."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
