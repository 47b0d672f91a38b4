"""Activities that keep a job's books: its start, each agent's end, spawn results, its outcome.

They run as local activities of the workflows (short ledger writes); each is idempotent, so a
retried or replayed one writes the same rows again, never twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from temporalio import activity

from kswarm.ledger import AgentRecord, StageRecord, ToolCallKey
from kswarm.ledger.repository import utcnow
from kswarm.rollouts import StageShape, collapse_metrics, is_success
from kswarm.tools import control as ctl
from kswarm.workflows.evaluation import Evaluation, evaluate_answer
from kswarm.workflows.inputs import (
    AgentResult,
    FinishJobInput,
    SpawnResultInput,
    StageSummary,
    StartJobInput,
    SwarmJobResult,
)
from kswarm.workflows.resources import ActivityResources

__all__ = ["RESULT_PREVIEW_CHARS", "BookkeepingActivities"]

RESULT_PREVIEW_CHARS = 4000


class BookkeepingActivities(ActivityResources):
    """``start_job``, ``finish_agent``, ``spawn_result`` and ``finish_job``."""

    @activity.defn(name="start_job")
    async def start_job(self, inp: StartJobInput) -> None:
        spec = inp.spec
        await self.ledger.upsert_job(
            uid=inp.uid,
            namespace=inp.namespace,
            name=inp.name,
            mode=spec.mode,
            spec=spec.to_manifest_spec(),
        )
        prompt = ctl.system_prompt(inp.role, spec.orchestrator.system_prompt)
        await self.ledger.upsert_agents(
            [
                AgentRecord(
                    id=inp.agent_id,
                    job_uid=inp.uid,
                    role=inp.role,
                    name=inp.role,
                    task=spec.task,
                    system_prompt=prompt,
                    stage=0,
                    status="Running",
                )
            ]
        )
        await self.ledger.append_messages(
            inp.uid,
            inp.agent_id,
            0,
            [{"role": "system", "content": prompt}, {"role": "user", "content": spec.task}],
        )

    async def _record_stage(self, job_uid: str, stage: StageSummary) -> None:
        await self.ledger.record_stage(
            job_uid,
            StageRecord(
                index=stage.stage,
                main_steps=stage.main_steps,
                max_subagent_steps=stage.max_subagent_steps,
                subagents=stage.subagents,
                model_seconds=stage.model_seconds,
            ),
        )

    @activity.defn(name="finish_agent")
    async def finish_agent(self, result: AgentResult) -> None:
        last = await self.ledger.last_message(result.agent_id, "assistant") or {}
        answer = answer_call(last)
        if answer is None:
            answer = str(last.get("content") or "")
        await self.ledger.update_agent(
            result.agent_id,
            status=result.status,
            steps=result.steps,
            answer=answer,
            error=result.error,
            finished_at=utcnow(),
        )

    @activity.defn(name="spawn_result")
    async def spawn_result(self, inp: SpawnResultInput) -> None:
        """Store a spawn call's result: every child's status and final answer."""
        outcomes = await self.ledger.agent_outcomes(inp.children)
        children = [
            {"agent": name, "status": status, "answer": answer}
            for name, status, answer in (outcomes[c] for c in inp.children if c in outcomes)
        ]
        key = ToolCallKey(inp.job_uid, inp.agent_id, inp.step, inp.call_index)
        begin = await self.ledger.begin_tool_call(key, tool=ctl.SPAWN_SUBAGENTS, arguments=None)
        if begin.outcome == "run":
            await self.ledger.finish_tool_call(key, status="succeeded", result=children)

    @activity.defn(name="finish_job")
    async def finish_job(self, inp: FinishJobInput) -> tuple[str, float | None]:
        """Write the outcome; return the (truncated) final answer and its quality score."""
        out = inp.outcome
        job = await self.ledger.get_job(out.uid)
        answer = await self._final_answer(inp.final_agent_id)
        evaluation = evaluate_answer(job.spec, answer) if job is not None else None
        quality = evaluation.quality if evaluation is not None else None
        plan = await self._plan_report(out, evaluation, job.spec if job is not None else {})
        await self.ledger.finish_job(
            out.uid,
            phase=out.phase,
            reason=out.reason,
            result=answer,
            critical_steps=out.critical_steps,
            total_steps=out.total_steps,
            speedup=out.speedup,
            wall_seconds=out.wall_seconds,
            model_seconds=out.model_seconds,
            quality=quality,
            report={
                "stages": [dataclasses.asdict(st) for st in out.stages],
                "subagents": {
                    "spawned": out.subagents_spawned,
                    "succeeded": out.subagents_succeeded,
                    "failed": out.subagents_failed,
                },
                "context": {"masked": out.context_masked, "dropped": out.context_dropped},
                **plan,
            },
        )
        await asyncio.gather(*(self._record_stage(out.uid, st) for st in out.stages))
        await self.ledger.update_agent(
            inp.final_agent_id, status=out.phase, answer=answer, finished_at=utcnow()
        )
        await self.ledger.flush()
        return answer[:RESULT_PREVIEW_CHARS], quality

    async def _plan_report(
        self, out: SwarmJobResult, evaluation: Evaluation | None, spec: Mapping[str, Any]
    ) -> dict[str, Any]:
        """What a rollout's reward and the collapse check need: finished sub-agents per stage,
        the evaluation's success, and the serial-collapse metrics."""
        finished: dict[int, int] = {}
        for a in await self.ledger.list_agents(out.uid):
            if a.role == "subagent" and a.status == "Succeeded" and a.stage is not None:
                finished[a.stage] = finished.get(a.stage, 0) + 1
        collapse = collapse_metrics(
            [StageShape(st.subagents, st.max_subagent_steps) for st in out.stages],
            critical_steps=out.critical_steps,
            items=evaluation.items if evaluation is not None else None,
            max_concurrent=int((spec.get("subagents") or {}).get("maxConcurrent") or 1),
        )
        report: dict[str, Any] = {
            "finishedPerStage": [finished.get(st.stage, 0) for st in out.stages if st.subagents],
            "collapse": collapse.to_dict(),
        }
        if evaluation is not None:
            report["evaluation"] = {
                "quality": evaluation.quality,
                "success": is_success(out.phase, evaluation.quality, evaluation.success_threshold),
                "successThreshold": evaluation.success_threshold,
                "error": evaluation.error,
            }
        return report

    async def _final_answer(self, agent_id: str) -> str:
        # The orchestrator's answer is its finish call's; a single agent's, its answer call's.
        for call in reversed(await self.ledger.get_tool_calls(agent_id)):
            if call.tool in (ctl.FINISH, ctl.ANSWER) and isinstance(call.arguments, dict):
                return str(call.arguments.get("answer", ""))
        history = await self.ledger.get_messages(agent_id)
        for m in reversed(history):
            if m.get("role") == "assistant" and not m.get("tool_calls"):
                return str(m.get("content") or "")
        return ""


def answer_call(message: dict[str, Any]) -> str | None:
    """The answer an assistant message gives through an ``answer`` (or ``finish``) call, the
    way agents end when their pool has ``toolChoice: required``; ``None`` when it makes none."""
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and function.get("name") in (ctl.ANSWER, ctl.FINISH):
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                continue
            if isinstance(args, dict) and "answer" in args:
                return str(args["answer"])
    return None
