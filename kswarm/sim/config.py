"""What a simulated vLLM replica costs, how it fails, and what it answers.

The simulator stands in for a GPU pool wherever there is none: tests, laptops, CI, benchmarks.
Its costs are those of an ~8B model on one H100 under vLLM (prefill about 20,000 tokens/s, 8 ms
per output token alone, about 25 ms per token in a full batch of 256) and everything is multiplied
by ``time_scale``, so a test can run a hundred agent steps in a second and still see the shape of
queueing, batching and prefix caching.

What the model *says* is a :data:`Behaviour`: a function of the request body and a random
generator seeded from the request's messages, so the same conversation gets the same answer. The
default is :func:`kswarm.sim.scripted.scripted_behaviour`, the scripted swarm of the demo world's
research tasks.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "DEFAULT_MODEL",
    "FAULT_KINDS",
    "Behaviour",
    "SimConfig",
    "trivial_behaviour",
]

Behaviour = Callable[[dict[str, Any], random.Random], dict[str, Any]]
"""``(request body, rng) -> assistant message``: ``{"role": "assistant", "content": ...,
"tool_calls": [{"id"?, "type": "function", "function": {"name", "arguments": "<JSON>"}}]}``.
A message may carry ``kswarm_output_tokens`` (int) to charge more output tokens than its text
holds, e.g. for hidden reasoning; the simulator removes that key before answering."""

DEFAULT_MODEL = "kswarm-sim"
FAULT_KINDS = ("503", "500", "429", "hang", "slow")

_ITL_BATCH_1 = 0.008
_ITL_BATCH_256 = 0.025


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    model: str = DEFAULT_MODEL
    """Served model name; requests for any other model get vLLM's 404."""
    seed: int = 0
    """Seeds answers (with a hash of the messages) and fault draws."""
    time_scale: float = 1.0
    """Multiplies every modelled duration: 0.01 runs 100x faster; 0 answers at once."""
    prefill_tokens_per_second: float = 20_000.0
    """Prefill throughput; prompts are prefilled one after another, uncached tokens only."""
    itl_seconds: float = _ITL_BATCH_1
    """Inter-token latency with one sequence decoding."""
    itl_seconds_per_extra_seq: float = (_ITL_BATCH_256 - _ITL_BATCH_1) / 255
    """Growth of the inter-token latency per additional decoding sequence (8 ms -> 25 ms at 256)."""
    max_num_seqs: int = 256
    """Most sequences in the running batch; more wait in a FIFO queue."""
    block_size: int = 16
    """Tokens per KV-cache block; only full blocks are cached."""
    num_gpu_blocks: int = 60_000
    """KV-cache capacity in blocks: bounds the running batch's KV and the prefix cache (LRU)."""
    chars_per_token: int = 4
    """Token estimate: ``ceil(characters / chars_per_token)``."""
    max_model_len: int = 131_072
    """Longest prompt plus ``max_tokens``; longer requests get vLLM's 400."""
    fail_503_rate: float = 0.0
    """Fraction of requests answered 503 at once (overload)."""
    fail_500_rate: float = 0.0
    """Fraction of requests answered 500 at once."""
    fail_429_rate: float = 0.0
    """Fraction of requests answered 429 at once, with ``Retry-After``."""
    retry_after_seconds: float | None = None
    """``Retry-After`` sent with a 503; ``None`` sends none (as vLLM)."""
    rate_limit_retry_after_seconds: float = 1.0
    """``Retry-After`` sent with a 429."""
    slow_rate: float = 0.0
    """Fraction of requests that take ``slow_factor`` times their modelled time (slow tails)."""
    slow_factor: float = 10.0
    """Stretch of a slow request."""
    hang_rate: float = 0.0
    """Fraction of requests that never answer (until the client gives up, or the cap)."""
    hang_cap_seconds: float = 600.0
    """Real seconds after which a hung request is answered 504 anyway."""
    behaviour: Behaviour | None = None
    """What the model answers; ``None`` means the default (see the module docstring)."""
    api_key: str | None = field(default=None, repr=False)
    """vLLM's ``--api-key``: every ``/v1/*`` request must carry ``Authorization: Bearer KEY``
    or gets 401 (``/health`` and ``/metrics`` stay open, as in vLLM); ``None``: no check."""

    def __post_init__(self) -> None:
        for name in ("fail_503_rate", "fail_500_rate", "fail_429_rate", "slow_rate", "hang_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}: must be between 0 and 1, got {rate}")
        positive = ("prefill_tokens_per_second", "max_num_seqs", "block_size", "num_gpu_blocks")
        for name in (*positive, "chars_per_token", "max_model_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.time_scale < 0 or self.itl_seconds < 0 or self.itl_seconds_per_extra_seq < 0:
            raise ValueError("time_scale, itl_seconds, itl_seconds_per_extra_seq: must be >= 0")
        if self.slow_factor < 1:
            raise ValueError(f"slow_factor: must be >= 1, got {self.slow_factor}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key: must not be empty (None turns the check off)")

    def itl(self, batch: int) -> float:
        """Modelled (unscaled) seconds per output token with ``batch`` sequences decoding."""
        return self.itl_seconds + self.itl_seconds_per_extra_seq * max(0, batch - 1)

    def tokens(self, chars: int) -> int:
        return -(-chars // self.chars_per_token)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _tool_names(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def trivial_behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Answer ``ok``; or, when tools are offered and the user spoke last, call the first tool
    (or the one ``tool_choice`` names) with ``{}``. ``tool_choice: none`` never calls."""
    names = _tool_names(body)
    choice = body.get("tool_choice", "auto")
    messages = body.get("messages") or []
    last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    name: str | None = None
    if isinstance(choice, dict):
        name = str(choice.get("function", {}).get("name"))
    elif names and (choice == "required" or (choice == "auto" and last_role == "user")):
        name = names[0]
    if name is None:
        return {"role": "assistant", "content": "ok", "tool_calls": []}
    call_id = f"chatcmpl-tool-{rng.getrandbits(64):016x}"
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({})},
            }
        ],
    }
