"""Typed inputs and results of the swarm workflows and their activities.

Only ids, counters and small summaries travel through Temporal history; prompts, messages,
model outputs and tool results stay in the ledger (claim check).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kswarm.spec import RetrySpec, SwarmJobSpec, parse_manifest

__all__ = [
    "TASK_QUEUE",
    "AgentResult",
    "FinishJobInput",
    "JobStatus",
    "ModelStepInput",
    "ModelStepResult",
    "SpawnRef",
    "SpawnResultInput",
    "StageSummary",
    "StartJobInput",
    "SubagentInput",
    "SwarmJobInput",
    "SwarmJobResult",
    "ToolBatchInput",
    "ToolBatchResult",
    "ToolCallInput",
    "ToolCallRef",
    "ToolCallResult",
    "pool_task_queue",
]

TASK_QUEUE = "kswarm"
"""Task queue of the workflows and of the ledger and tool activities."""


def pool_task_queue(pool: str) -> str:
    """Model calls of a pool run on the pool's own queue, so its limits hold across workers."""
    return f"kswarm-pool-{pool}"


@dataclass
class SwarmJobInput:
    """Input of :class:`SwarmWorkflow`. Build it from a manifest with :meth:`from_manifest`."""

    name: str
    namespace: str
    uid: str
    spec: SwarmJobSpec

    @property
    def workflow_id(self) -> str:
        return f"swarmjob-{self.uid}"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> SwarmJobInput:
        m = parse_manifest(manifest)
        return cls(name=m.name, namespace=m.namespace, uid=m.uid, spec=m.spec)


@dataclass
class StageSummary:
    stage: int
    main_steps: int
    max_subagent_steps: int
    subagents: int
    model_seconds: float = 0.0


@dataclass
class SwarmJobResult:
    name: str
    uid: str
    phase: str
    """Succeeded, Failed or Cancelled."""
    reason: str | None
    critical_steps: int
    total_steps: int
    speedup: float
    stages: list[StageSummary]
    subagents_spawned: int
    subagents_succeeded: int
    subagents_failed: int
    model_seconds: float
    wall_seconds: float
    quality: float | None
    result: str
    """The final answer, truncated; the whole answer is in the ledger."""


@dataclass
class JobStatus:
    """Answer of the ``status`` query: live counters of a running job."""

    phase: str = "Pending"
    reason: str | None = None
    stage: int = 0
    critical_steps: int = 0
    total_steps: int = 0
    subagents_spawned: int = 0
    subagents_running: int = 0
    subagents_succeeded: int = 0
    subagents_failed: int = 0
    orchestrator_steps: int = 0
    stages: list[StageSummary] = field(default_factory=list)


@dataclass
class StartJobInput:
    uid: str
    name: str
    namespace: str
    spec: SwarmJobSpec
    agent_id: str
    role: str


@dataclass
class SpawnRef:
    call_index: int
    agent_id: str
    name: str


@dataclass
class ToolCallRef:
    index: int
    name: str
    kind: str
    """``tool`` (run it), ``spawn`` (start sub-agents), ``finish``, ``refused`` or ``done``."""
    local: bool = True


@dataclass
class ModelStepInput:
    job_uid: str
    agent_id: str
    role: str
    """``orchestrator``, ``subagent`` or ``single``."""
    step: int
    pool: str
    model: str
    tools: list[str]
    max_tool_calls: int
    max_tokens: int | None
    retry: RetrySpec
    stage: int = 0
    profile: str = "swarm"
    final_turn: bool = False
    """Ask for an answer without tool calls (budget or step limit reached)."""


@dataclass
class ModelStepResult:
    step: int
    tool_calls: list[ToolCallRef]
    spawns: list[SpawnRef]
    final: bool
    """The agent answered (no tool calls, or ``finish``)."""
    input_tokens: int
    output_tokens: int
    model_seconds: float
    latency_seconds: float
    budget_exhausted: str | None = None
    """``maxToolCalls`` or ``maxTokens`` when a job budget ran out during this step."""
    refusal: str | None = None
    """The model declined the task (the OpenAI ``refusal`` field): the agent ends Failed."""


@dataclass
class ToolCallInput:
    job_uid: str
    agent_id: str
    step: int
    index: int
    tool: str


@dataclass
class ToolCallResult:
    index: int
    status: str
    """``succeeded``, ``failed``, ``refused``."""
    deduplicated: bool = False


@dataclass
class ToolBatchInput:
    """The short tool calls of one agent step, run together in one local activity."""

    calls: list[ToolCallInput]
    max_attempts: int = 3
    """Attempts of a call whose tool fails with a retryable error, inside the batch."""
    initial_interval_seconds: float = 0.1


@dataclass
class ToolBatchResult:
    results: list[ToolCallResult]


@dataclass
class SubagentInput:
    job_uid: str
    agent_id: str
    stage: int
    pool: str
    model: str
    tools: list[str]
    max_steps: int
    max_tool_calls: int
    max_tokens: int | None
    retry: RetrySpec


@dataclass
class AgentResult:
    agent_id: str
    status: str
    """Succeeded, Failed or Cancelled."""
    steps: int
    tool_calls: int
    model_seconds: float
    budget_exhausted: str | None = None
    error: str | None = None


@dataclass
class SpawnResultInput:
    job_uid: str
    agent_id: str
    step: int
    call_index: int
    children: list[str]


@dataclass
class FinishJobInput:
    outcome: SwarmJobResult
    """The job's result as the workflow knows it; the activity adds ``result`` and ``quality``."""
    final_agent_id: str
