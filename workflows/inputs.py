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
    "speedup",
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
    context_masked: int = 0
    """Tool results context management masked in prompts, all agents together."""
    context_dropped: int = 0
    """Messages context management dropped from prompts, all agents together."""

    @classmethod
    def of(
        cls,
        *,
        name: str,
        uid: str,
        phase: str,
        reason: str | None,
        critical_steps: int,
        total_steps: int,
        stages: list[StageSummary] | None = None,
        subagents: tuple[int, int, int] = (0, 0, 0),
        model_seconds: float = 0.0,
        wall_seconds: float = 0.0,
        quality: float | None = None,
        result: str = "",
        context_masked: int = 0,
        context_dropped: int = 0,
    ) -> SwarmJobResult:
        """The one way a result is built (by the workflow, from a live status, from the
        ledger): ``speedup`` follows from the steps; ``subagents`` is (spawned, succeeded,
        failed)."""
        spawned, succeeded, failed = subagents
        return cls(
            name=name,
            uid=uid,
            phase=phase,
            reason=reason,
            critical_steps=critical_steps,
            total_steps=total_steps,
            speedup=speedup(total_steps, critical_steps),
            stages=list(stages or []),
            subagents_spawned=spawned,
            subagents_succeeded=succeeded,
            subagents_failed=failed,
            model_seconds=model_seconds,
            wall_seconds=wall_seconds,
            quality=quality,
            result=result,
            context_masked=context_masked,
            context_dropped=context_dropped,
        )


def speedup(total_steps: int, critical_steps: int) -> float:
    """``totalSteps / criticalSteps`` (3 decimals): how much the swarm's parallelism saved;
    0 before the first critical step."""
    return round(total_steps / critical_steps, 3) if critical_steps else 0.0


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
    context_masked: int = 0
    context_dropped: int = 0


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
    approval: bool = False
    """The call waits for a person's decision before it runs (``requireApproval``)."""


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
    finish_agent: bool = False
    """When this step's answer ends the agent, store its end (status, answer) in the step's own
    write: the workflow then runs no ``finish_agent`` (``agent_finished`` says so)."""


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
    stop_reason: str | None = None
    """Why the agent must end now (``RepeatedToolCall: ...``, ``ToolErrorBudgetExceeded:
    ...``); ``final`` is then true too."""
    context_masked: int = 0
    """Tool results context management masked in this step's prompt."""
    context_dropped: int = 0
    """Messages of old steps context management left out of this step's prompt."""
    refusal: str | None = None
    """The model declined the task (the OpenAI ``refusal`` field): the agent ends Failed."""
    agent_finished: bool = False
    """The step stored the agent's end (``finish_agent`` asked for, and the step is final)."""


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
    context_masked: int = 0
    """Tool results context management masked, over all of the agent's steps."""
    context_dropped: int = 0
    """Messages context management dropped, over all of the agent's steps."""


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
