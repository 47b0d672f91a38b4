"""Value types that cross the ledger's boundary: keys, records to write, answers to reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AgentEnd",
    "AgentRecord",
    "JobCounters",
    "ModelCallRecord",
    "StageRecord",
    "ToolCallBegin",
    "ToolCallKey",
]


@dataclass(frozen=True)
class ToolCallKey:
    """Idempotency key of one tool call: ``(job uid, agent id, step, call index)``."""

    job_uid: str
    agent_id: str
    step: int
    index: int

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.step}/{self.index}"


@dataclass(frozen=True)
class AgentEnd:
    """How an agent ended, stored with the model step that ended it."""

    status: str
    answer: str
    error: str | None = None


@dataclass(frozen=True)
class ToolCallBegin:
    """What :meth:`Ledger.begin_tool_call` decided.

    ``outcome`` is ``run`` (run the tool; ``attempt`` counts from 1), ``stored`` (a result is
    stored: return it, the call counts as deduplicated) or ``budget_exhausted``.
    """

    outcome: str
    attempt: int = 0
    status: str = ""
    result: Any = None
    error: str | None = None
    arguments: Any = None


@dataclass(kw_only=True)
class AgentRecord:
    id: str
    job_uid: str
    role: str
    name: str
    task: str
    parent_id: str | None = None
    stage: int | None = None
    system_prompt: str | None = None
    status: str = "Pending"


@dataclass(kw_only=True)
class StageRecord:
    index: int
    main_steps: int
    max_subagent_steps: int
    subagents: int
    model_seconds: float | None = None


@dataclass(kw_only=True)
class ModelCallRecord:
    job_uid: str
    agent_id: str
    step: int
    attempt: int
    pool: str
    model: str
    status: str
    replica: str | None = None
    http_status: int | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    ttft_seconds: float | None = None
    latency_seconds: float | None = None
    model_seconds: float | None = None
    started_at: float = 0.0
    """Epoch seconds."""
    prompt_token_ids: list[int] | None = None
    completion_token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    """Token ids and log-probabilities, when the pool asks the server for them."""


@dataclass
class JobCounters:
    tool_calls_total: int = 0
    tool_calls_failed: int = 0
    tool_calls_deduplicated: int = 0
    tool_calls_refused: int = 0
    llm_calls: int = 0
    llm_attempts_failed: int = 0
    tokens_input: int = 0
    tokens_output: int = 0
    by_tool: dict[str, int] = field(default_factory=dict)
