"""In-process claims on tool-call keys: which task of this process is running which key.

The ledger's rows say whether a tool call has a stored result, but not whether the worker that
began it is still alive. Within one process that is knowable: the task that began the key. A
second task that begins a key whose owner is alive is a duplicate of a call in flight (a
retried activity racing the first, a replayed step): it waits until the owner finishes the key
and then finds the stored result. A key whose owner task ended without finishing (its activity
failed) is free, and its next begin runs it again as a new attempt. Across processes the
database decides (see ``tool_calls``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Claim", "Claims"]


@dataclass(eq=False, slots=True)
class Claim:
    """One task's hold on one key; ``released`` is set when the hold ends."""

    owner: asyncio.Task[Any] | None
    released: asyncio.Event
    on_owner_done: Callable[[asyncio.Task[Any]], object] | None = None

    def alive(self) -> bool:
        return self.owner is not None and not self.owner.done()


class Claims:
    """Tool-call keys this process is running, each with the task that runs it."""

    def __init__(self) -> None:
        self._held: dict[str, Claim] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    async def acquire(self, key: str) -> Claim:
        """Claim ``key`` for the current task, first waiting while another live task holds it.

        The same task may claim a key again (it gave up on its earlier attempt).
        """
        me = asyncio.current_task()
        while True:
            held = self._held.get(key)
            if held is None or held.owner is me or not held.alive():
                break
            await held.released.wait()
        if held is not None:
            _settle(held)  # its waiters look again and find the new claim
        claim = Claim(owner=me, released=asyncio.Event())
        self._held[key] = claim
        if me is not None:
            claim.on_owner_done = lambda _task: self.release(key, claim)
            me.add_done_callback(claim.on_owner_done)
        return claim

    def release(self, key: str, claim: Claim | None = None) -> None:
        """End the hold on ``key`` (only ``claim``'s, when given) and wake its waiters."""
        held = self._held.get(key)
        if held is not None and (claim is None or held is claim):
            del self._held[key]
            _settle(held)
        if claim is not None:
            _settle(claim)


def _settle(claim: Claim) -> None:
    claim.released.set()
    if claim.owner is not None and claim.on_owner_done is not None:
        claim.owner.remove_done_callback(claim.on_owner_done)
        claim.on_owner_done = None
