"""Which replica of a pool takes the next request.

Agents of one job share long prompt prefixes (system prompt, tool definitions, the task), and
vLLM's prefix cache skips the prefill of a prefix it has seen. ``prefix-affinity`` (the default)
therefore sends a ``prefix_key`` to the same replica every time, by rendezvous hashing (every
process agrees without talking, and removing a replica moves only its own keys). Stickiness must
not pile a whole swarm onto one replica, so a bounded-load rule applies: a replica whose load
reaches ``ceil(c * mean_load) + 1`` spills the request to the key's next choice. A key of the
form ``group/member`` (``job-7/agent-3``) is the better one for swarms: the job's shared prefix
lives on two replicas instead of one (twice the capacity for its burst of sub-agents), and each
agent's own growing conversation stays on one of them.

A spilled agent's conversation is cached where it spilled to, not at its hashed home, so a call
may name the replica that answered its conversation's previous call (``replica_hint``): it goes
there while that replica is in rotation, has a free slot and is below the looser sticky bound
(``RouterSettings.sticky_bound_factor``), and is placed as a new key otherwise. The hint travels
with the conversation (the sub-agent workflow stores it with each answer), so every worker
process agrees on it.

``least-load`` ignores the key and scores replicas from their ``/metrics``; ``round-robin``
cycles. All policies skip ejected replicas (see :mod:`kswarm.llm.replicas`) and replicas at the
pool's ``max_concurrency``; when every open replica is full, :meth:`Router.acquire` waits.

The clock is injectable, so tests can run a cool-down without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Sequence

import httpx

from kswarm.llm.errors import ReplicaUnavailable
from kswarm.llm.pools import PoolConfig
from kswarm.llm.replicas import (
    DEFAULT_ROUTER_SETTINGS,
    ReplicaState,
    RouterSettings,
    bounded_load_limit,
    parse_vllm_metrics,
)

__all__ = ["Router", "rendezvous_order"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

GROUP_SPREAD = 2
"""Replicas one group of a ``group/member`` prefix key is spread over."""


def _weight(key: str, url: str) -> int:
    digest = hashlib.blake2b(f"{key}\0{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, replicas: Sequence[ReplicaState]) -> list[ReplicaState]:
    """Replicas in the order ``key`` prefers them (highest random weight first).

    A key ``group/member`` (e.g. ``job-7/agent-3``) keeps a group on its ``GROUP_SPREAD`` first
    replicas and places each member on one of them: the group's shared prefix is cached on a few
    replicas only, while each member's own history stays on one, and the group's load is split.
    """
    group, _, member = key.partition("/")
    order = sorted(replicas, key=lambda r: _weight(group, r.url), reverse=True)
    if not member:
        return order
    head = sorted(order[:GROUP_SPREAD], key=lambda r: _weight(key, r.url), reverse=True)
    return head + order[GROUP_SPREAD:]


class Router:
    """Replica choice, in-flight accounting and health for one pool, in one process."""

    def __init__(
        self,
        pool: PoolConfig,
        *,
        http: httpx.AsyncClient | None = None,
        settings: RouterSettings = DEFAULT_ROUTER_SETTINGS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.pool = pool
        self.policy = pool.router
        self.settings = settings
        self.replicas = tuple(ReplicaState(url=url) for url in pool.replicas)
        self._by_url = {r.url: r for r in self.replicas}
        self._http = http
        self._clock = clock
        self._next = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def scrapes_metrics(self) -> bool:
        return self.policy in ("least-load", "prefix-affinity")

    # Choosing ----------------------------------------------------------------------------

    def choose(
        self,
        prefix_key: str | None,
        *,
        avoid: Collection[str] = (),
        hint: str | None = None,
    ) -> ReplicaState | None:
        """The replica for the next request, or ``None`` when every open one is full.

        ``avoid`` names replicas that already failed this call; they are used only when no
        other replica is in rotation. ``hint`` is the replica that served the conversation's
        previous call (``prefix-affinity`` only). Raises :class:`ReplicaUnavailable` when all
        are ejected.
        """
        live = [r for r in self.replicas if not r.ejected]
        if not live:
            raise ReplicaUnavailable(
                f"all {len(self.replicas)} replicas of the pool are ejected", pool=self.pool.name
            )
        preferred = [r for r in live if r.url not in avoid] or live
        cap = self.pool.max_concurrency
        open_ = [r for r in preferred if r.in_flight < cap] or [
            r for r in live if r.in_flight < cap
        ]
        if not open_:
            return None
        now = self._clock()
        if self.policy == "round-robin":
            return self._round_robin(open_)
        if self.policy == "least-load":
            return self._least(open_, lambda r: r.score(now, self.settings))
        total = sum(r.load(now, self.settings) for r in live)
        sticky = self._by_url.get(hint) if hint is not None else None
        if sticky is not None and sticky in open_:
            limit = bounded_load_limit(total, len(live), self.settings.sticky_bound_factor)
            if sticky.load(now, self.settings) < limit:
                return sticky
        if prefix_key is None:
            return self._least(open_, lambda r: r.score(now, self.settings))
        limit = bounded_load_limit(total, len(live), self.settings.bound_factor)
        for replica in rendezvous_order(prefix_key, open_):
            if replica.load(now, self.settings) < limit:
                return replica
        return self._least(open_, lambda r: r.load(now, self.settings))

    def _round_robin(self, open_: list[ReplicaState]) -> ReplicaState:
        n = len(self.replicas)
        for step in range(n):
            replica = self.replicas[(self._next + step) % n]
            if replica in open_:
                self._next = (self._next + step + 1) % n
                return replica
        return open_[0]

    def _least(
        self, open_: list[ReplicaState], score: Callable[[ReplicaState], float]
    ) -> ReplicaState:
        n = len(self.replicas)
        order = {r.url: i for i, r in enumerate(self.replicas)}
        best = min(open_, key=lambda r: (score(r), r.in_flight, (order[r.url] - self._next) % n))
        self._next = (order[best.url] + 1) % n
        return best

    async def acquire(
        self, prefix_key: str | None, *, avoid: Collection[str] = (), hint: str | None = None
    ) -> str:
        """Reserve a slot on a replica (waiting while all are full); its base URL."""
        self._ensure_started()
        while True:
            replica = self.choose(prefix_key, avoid=avoid, hint=hint)
            if replica is not None:
                replica.in_flight += 1
                replica.dispatched += 1
                return replica.url
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def release(self, url: str, outcome: str, http_status: int | None = None) -> None:
        """Give back the slot taken by :meth:`acquire` and count the attempt's outcome."""
        replica = self._by_url[url]
        replica.in_flight = max(0, replica.in_flight - 1)
        if replica.record(outcome, http_status, self._clock(), self.settings):
            log.warning(
                "replica ejected pool=%s replica=%s after=%s until=%.1f",
                self.pool.name,
                url,
                outcome,
                replica.ejected_until or 0.0,
            )
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # Health and metrics ------------------------------------------------------------------

    async def _get(self, url: str, path: str) -> httpx.Response | None:
        response, _ = await self._request(url, path)
        return response

    async def _request(self, url: str, path: str) -> tuple[httpx.Response | None, bool]:
        """The answer to ``GET url+path`` (``None`` on any error), and whether the connection
        was refused."""
        if self._http is None:
            return None, False
        headers = {"Authorization": f"Bearer {self.pool.api_key}"} if self.pool.api_key else {}
        try:
            response = await self._http.get(
                url.rstrip("/") + path,
                headers=headers,
                timeout=self.settings.probe_timeout_seconds,
            )
        except httpx.ConnectError:
            return None, True
        except httpx.HTTPError:
            return None, False
        return response, False

    async def _probe(self, replica: ReplicaState) -> None:
        response, refused = await self._request(replica.url, "/health")
        # An endpoint without a /health route (a hosted OpenAI-compatible API) answers 404 or
        # 405: that says nothing against it, and its request errors still count.
        healthy = response is not None and response.status_code in (200, 404, 405)
        now = self._clock()
        if healthy:
            replica.failed_probes = 0
            if replica.ejected:
                replica.restore()
                log.info("replica restored pool=%s replica=%s", self.pool.name, replica.url)
                self._wake()
            return
        replica.failed_probes += 1
        if not (
            refused
            or replica.ejected  # still failing after its cool-down: out again, for longer
            or replica.failed_probes >= self.settings.health_failures_to_eject
        ):
            return
        what = "refused /health" if refused else f"failed /health {replica.failed_probes} times"
        cooldown = replica.eject(now, self.settings)
        log.warning(
            "replica %s pool=%s replica=%s cooldown=%.1f",
            what,
            self.pool.name,
            replica.url,
            cooldown,
        )

    async def check_health(self, *, all_replicas: bool = True) -> None:
        """Probe ``/health``: of every replica in rotation when ``all_replicas``, and of every
        ejected replica whose cool-down is over. A 200 (or a 404/405 from an endpoint without
        the route) restores; a refused connection, a timeout or any other status ejects."""
        now = self._clock()
        due = [
            r
            for r in self.replicas
            if (r.ejected and (r.ejected_until or 0.0) <= now) or (all_replicas and not r.ejected)
        ]
        await asyncio.gather(*(self._probe(r) for r in due))

    async def scrape_metrics(self) -> None:
        """Read ``/metrics`` of every replica in rotation; a failed scrape keeps the last one."""

        async def scrape(replica: ReplicaState) -> None:
            response = await self._get(replica.url, "/metrics")
            if response is not None and response.status_code in (404, 405):
                replica.serves_metrics = False  # not vLLM: route by in-flight counts alone
            if response is None or response.status_code != 200:
                return
            try:
                replica.observe(parse_vllm_metrics(response.text, scraped_at=self._clock()))
            except ValueError as e:
                log.debug("unreadable /metrics replica=%s: %s", replica.url, e)

        await asyncio.gather(
            *(scrape(r) for r in self.replicas if not r.ejected and r.serves_metrics)
        )

    # Background --------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._tasks or self._http is None:
            return
        s = self.settings
        self._tasks.append(asyncio.create_task(self._every(s.health_interval_seconds, True)))
        self._tasks.append(asyncio.create_task(self._every(s.recovery_interval_seconds, False)))
        if self.scrapes_metrics:
            self._tasks.append(asyncio.create_task(self._scrape_every()))

    async def _every(self, interval: float, all_replicas: bool) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_health(all_replicas=all_replicas)
            except Exception:
                log.exception("health check failed pool=%s", self.pool.name)

    async def _scrape_every(self) -> None:
        while True:
            try:
                await self.scrape_metrics()
            except Exception:
                log.exception("metrics scrape failed pool=%s", self.pool.name)
            await asyncio.sleep(self.settings.metrics_interval_seconds)

    async def aclose(self) -> None:
        """Stop the background probes and scrapes."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake()

    def snapshot(self) -> list[dict[str, object]]:
        return [dict(r.snapshot()) for r in self.replicas]
