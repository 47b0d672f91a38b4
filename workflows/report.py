"""The run report: one object whose keys match the SwarmJob CR status and ``kswarm run --json``.

Counters come from the ledger (the source of truth for calls and tokens); the stage accounting
comes from the workflow's result.
"""

from __future__ import annotations

from typing import Any

from kswarm.ledger import JobCounters
from kswarm.tools.control import STEERING_TOOLS
from kswarm.workflows.inputs import StageSummary, SwarmJobResult

__all__ = ["build_report", "stage_dicts"]


def stage_dicts(stages: list[StageSummary]) -> list[dict[str, Any]]:
    return [
        {
            "stage": s.stage,
            "mainSteps": s.main_steps,
            "maxSubagentSteps": s.max_subagent_steps,
            "subagents": s.subagents,
        }
        for s in stages
    ]


def build_report(result: SwarmJobResult, counters: JobCounters) -> dict[str, Any]:
    control = sum(n for tool, n in counters.by_tool.items() if tool in STEERING_TOOLS)
    return {
        "name": result.name,
        "uid": result.uid,
        "phase": result.phase,
        "criticalSteps": result.critical_steps,
        "totalSteps": result.total_steps,
        "speedup": result.speedup,
        "stages": stage_dicts(result.stages),
        "subagents": {
            "spawned": result.subagents_spawned,
            "succeeded": result.subagents_succeeded,
            "failed": result.subagents_failed,
        },
        "toolCalls": {
            "total": counters.tool_calls_total - control,
            "failed": counters.tool_calls_failed + counters.tool_calls_refused,
            "deduplicated": counters.tool_calls_deduplicated,
        },
        "llmCalls": counters.llm_calls,
        "tokens": {"input": counters.tokens_input, "output": counters.tokens_output},
        "wallSeconds": round(result.wall_seconds, 3),
        "modelSeconds": round(result.model_seconds, 3) if result.model_seconds else None,
        "quality": result.quality,
        "context": {"masked": result.context_masked, "dropped": result.context_dropped},
        "reason": result.reason,
        "result": result.result,
    }
