"""The simulator's engine: a cost model of vLLM's continuous batching, run in modelled time.

Requests wait in a FIFO queue until the running batch has room (``max_num_seqs`` sequences, and
KV blocks for the prompt and the answer). On admission the prompt is looked up in the prefix
cache, an LRU of chained block hashes, and only the uncached tokens are prefilled, one prompt
after another at ``prefill_tokens_per_second``; the end of its prefill is the request's first
token. Then it decodes with every other decoding sequence, each gaining one token per
``itl(batch)`` seconds, until its last token frees its slot and the queue moves.

Nothing here sleeps per request or ticks per token. Between two events (a prefill ends, a
sequence finishes, a request arrives) the batch is constant, so the engine keeps one counter
``v`` of tokens every decoding sequence has gained and a heap of the ``v`` at which each sequence
reaches a milestone; one timer wakes the engine at the next event. That keeps its own cost at a
few microseconds per event, whatever the batch size. Prefill and decode are modelled as running
side by side (vLLM's chunked prefill interleaves them), and a request the client abandons is
aborted and frees its slot, as vLLM does.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from kswarm.sim.config import SimConfig
from kswarm.sim.metrics import SimMetrics

__all__ = ["Engine", "PrefixCache", "SimRequest"]

_DONE = 1
_MILESTONE = 0


class PrefixCache:
    """Full blocks of serialized prompts, identified by chained hashes, evicted least recent."""

    def __init__(self, capacity_blocks: int, block_chars: int) -> None:
        self.capacity = capacity_blocks
        self.block_chars = block_chars
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup_and_insert(self, text: str) -> int:
        """Leading blocks of ``text`` already cached; afterwards all its full blocks are."""
        blocks = self._blocks
        size = self.block_chars
        h = 0
        hits = 0
        leading = True
        for start in range(0, len(text) - size + 1, size):
            h = hash((h, text[start : start + size]))
            if h in blocks:
                blocks.move_to_end(h)
                if leading:
                    hits += 1
            else:
                leading = False
                blocks[h] = None
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        return hits


@dataclass(eq=False)
class SimRequest:
    """One request inside the engine; times are modelled seconds on the engine's clock."""

    prompt_text: str
    prompt_tokens: int
    output_tokens: int
    kv_blocks: int
    first_token: asyncio.Future[None]
    done: asyncio.Future[None]
    milestones: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    """(decode token offset, future) pairs resolved as decoding passes them (streaming)."""
    cached_tokens: int = 0
    arrival: float = 0.0
    admitted_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    aborted: bool = False
    decoding: bool = False
    reason: str = "stop"
    """``finished_reason`` counted when it ends normally (``stop`` or ``length``)."""

    @property
    def model_seconds(self) -> float:
        """Modelled (unscaled) seconds from arrival to the last token."""
        return (self.finished_at or self.arrival) - self.arrival


class Engine:
    """Queue, batch and prefix cache of one replica, driven by the event loop's clock."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = SimMetrics(model_name=config.model)
        self.cache = PrefixCache(config.num_gpu_blocks, config.block_size * config.chars_per_token)
        self.waiting: deque[SimRequest] = deque()
        self._prefilling: deque[SimRequest] = deque()
        self._heap: list[tuple[float, int, int, SimRequest, asyncio.Future[None] | None]] = []
        self._seq = 0
        self.running = 0
        self.decoding = 0
        self.kv_used = 0
        self._v = 0.0
        self._t = 0.0
        self._prefill_free_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    # Clock ---------------------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._t0 = loop.time()
        scale = self.config.time_scale
        return (loop.time() - self._t0) / scale if scale > 0 else self._t

    def _real(self, t: float) -> float:
        return self._t0 + t * self.config.time_scale

    # Public --------------------------------------------------------------------------------

    def submit(
        self,
        prompt_text: str,
        output_tokens: int,
        *,
        milestones: Sequence[int] = (),
        reason: str = "stop",
    ) -> SimRequest:
        """Queue a request; await its ``first_token``, ``milestones`` and ``done`` futures."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        prompt_tokens = max(1, cfg.tokens(len(prompt_text)))
        output_tokens = max(1, output_tokens)
        request = SimRequest(
            prompt_text=prompt_text,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            kv_blocks=-(-(prompt_tokens + output_tokens) // cfg.block_size),
            first_token=loop.create_future(),
            done=loop.create_future(),
            milestones=[(offset, loop.create_future()) for offset in milestones],
            reason=reason,
        )
        now = self._now()
        self.advance(now)
        request.arrival = now
        self.waiting.append(request)
        self._admit(now)
        if cfg.time_scale == 0:
            self.advance(math.inf)  # no modelled time passes: run everything to completion
        self._schedule()
        return request

    def abort(self, request: SimRequest) -> None:
        """The client went away: free the request's slot (no-op once it finished)."""
        if request.finished_at is not None or request.aborted:
            return
        request.aborted = True
        if request.admitted_at is None:
            self.waiting.remove(request)
            return
        now = self._now()
        self.advance(now)
        self._release(request, now, "abort")
        self._schedule()

    def sample(self) -> tuple[int, int, float]:
        """``(running, waiting, kv_cache_usage)`` at this moment."""
        self.advance(self._now())
        self._schedule()
        return self.running, len(self.waiting), min(1.0, self.kv_used / self.config.num_gpu_blocks)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # Events --------------------------------------------------------------------------------

    def _next_prefill(self) -> float:
        if not self._prefilling:
            return math.inf
        return self._prefilling[0].first_token_at or 0.0

    def _next_event(self) -> float:
        t = self._next_prefill()
        if self._heap and self.decoding:
            itl = self.config.itl(self.decoding)
            t = min(t, self._t + max(0.0, self._heap[0][0] - self._v) * itl)
        return t

    def _move(self, t: float) -> None:
        if t <= self._t:
            return
        if self.decoding:
            itl = self.config.itl(self.decoding)
            self._v += (t - self._t) / itl if itl > 0 else math.inf
        self._t = t

    def advance(self, until: float) -> None:
        """Play every event up to modelled time ``until``."""
        while True:
            t_prefill = self._next_prefill()
            t_next = self._next_event()
            if t_next > until or t_next == math.inf:
                break
            self._move(t_next)
            if t_prefill <= t_next:
                self._prefilled(self._prefilling.popleft(), t_next)
            else:
                v, _, kind, request, future = heapq.heappop(self._heap)
                self._v = max(self._v, v)
                if request.aborted:
                    continue
                if kind == _DONE:
                    self._release(request, t_next, request.reason)
                elif future is not None and not future.done():
                    future.set_result(None)
        if until != math.inf:
            self._move(until)

    def _admit(self, t: float) -> None:
        cfg = self.config
        while self.waiting and self.running < cfg.max_num_seqs:
            request = self.waiting[0]
            if self.running and self.kv_used + request.kv_blocks > cfg.num_gpu_blocks:
                break
            self.waiting.popleft()
            hits = self.cache.lookup_and_insert(request.prompt_text)
            request.prompt_text = ""
            request.cached_tokens = min(hits * cfg.block_size, request.prompt_tokens - 1)
            self.metrics.prefix_cache_queries += request.prompt_tokens
            self.metrics.prefix_cache_hits += request.cached_tokens
            uncached = request.prompt_tokens - request.cached_tokens
            start = max(t, self._prefill_free_at)
            self._prefill_free_at = start + uncached / cfg.prefill_tokens_per_second
            request.admitted_at = t
            request.first_token_at = self._prefill_free_at
            self._prefilling.append(request)
            self.running += 1
            self.kv_used += request.kv_blocks

    def _prefilled(self, request: SimRequest, t: float) -> None:
        if request.aborted:
            return
        scale = self.config.time_scale
        self.metrics.prompt_tokens += request.prompt_tokens
        self.metrics.ttft.observe((t - request.arrival) * scale)
        if not request.first_token.done():
            request.first_token.set_result(None)
        request.decoding = True
        self.decoding += 1
        remaining = request.output_tokens - 1
        for offset, future in request.milestones:
            if offset <= 0:
                future.set_result(None)
            else:
                self._push(self._v + min(offset, remaining), _MILESTONE, request, future)
        self._push(self._v + remaining, _DONE, request, None)

    def _push(
        self, v: float, kind: int, request: SimRequest, future: asyncio.Future[None] | None
    ) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (v, self._seq, kind, request, future))

    def _release(self, request: SimRequest, t: float, reason: str) -> None:
        if request.decoding:
            request.decoding = False
            self.decoding -= 1
        self.running -= 1
        self.kv_used -= request.kv_blocks
        request.finished_at = t
        m = self.metrics
        m.finished(reason)
        if reason != "abort":
            scale = self.config.time_scale
            m.generation_tokens += request.output_tokens
            decode = t - (request.first_token_at or t)
            if request.output_tokens > 1:
                m.itl.observe(
                    decode / (request.output_tokens - 1) * scale, request.output_tokens - 1
                )
            m.e2e.observe((t - request.arrival) * scale)
            for _, future in request.milestones:
                if not future.done():
                    future.set_result(None)
            if not request.done.done():
                request.done.set_result(None)
        self._admit(t)

    def _schedule(self) -> None:
        """Keep one timer armed for the next event."""
        if self.config.time_scale == 0:
            return
        t = self._next_event()
        if t == math.inf:
            return
        when = self._real(t)
        if self._timer is not None:
            if when >= self._timer_at:
                return
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self.advance(self._now())
        self._schedule()
