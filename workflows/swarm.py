"""The swarm workflows: an orchestrator that spawns sub-agents, and each sub-agent's loop.

``SwarmWorkflow`` runs the orchestrator: every orchestrator step is one model call whose tool
calls may spawn sub-agents (``spawn_subagents`` or ``create_subagent`` + ``assign_task``), run
plain tools, or ``finish``. Each step is a stage t; its sub-agents run as ``SubagentWorkflow``
children in parallel (at most ``maxConcurrent`` at once) and the stage ends when all are done:

    criticalSteps = sum_t (S_main(t) + max_i S_sub,i(t)),   speedup = totalSteps / criticalSteps

In ``single`` mode the one agent runs the same loop without spawn tools; each of its steps is a
stage with no sub-agents. Budgets end the job with a reason; cancellation reaches every child.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from kswarm.spec import Mode, Phase, RetrySpec, Role, SwarmJobSpec, ToolCallKind
    from kswarm.tools import control as ctl
    from kswarm.workflows.activities import SwarmActivities, agent_id_for
    from kswarm.workflows.approvals import (
        DECIDE_SIGNAL,
        ApprovalRecord,
        ApprovalWait,
        ToolCallDecision,
    )
    from kswarm.workflows.inputs import (
        AgentResult,
        FinishJobInput,
        JobStatus,
        ModelStepInput,
        ModelStepResult,
        SpawnResultInput,
        StageSummary,
        StartJobInput,
        SubagentInput,
        SwarmJobInput,
        SwarmJobResult,
        ToolBatchInput,
        ToolBatchResult,
        ToolCallInput,
        ToolCallResult,
        pool_task_queue,
    )

__all__ = ["SubagentWorkflow", "SwarmWorkflow"]

T = TypeVar("T")

MODEL_STEP_TIMEOUT = timedelta(minutes=15)
MODEL_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
TOOL_TIMEOUT = timedelta(seconds=60)
LEDGER_TIMEOUT = timedelta(seconds=60)
_LIMIT_FIELDS = {"maxToolCalls": "max_tool_calls", "maxTokens": "max_tokens"}


def retry_policy(spec: RetrySpec) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_interval_seconds),
        backoff_coefficient=spec.backoff_coefficient,
        maximum_interval=timedelta(seconds=spec.maximum_interval_seconds),
        maximum_attempts=spec.max_attempts,
    )


LEDGER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=0,
)


async def _model_step(inp: ModelStepInput) -> ModelStepResult:
    return await workflow.execute_activity_method(
        SwarmActivities.model_step,
        inp,
        task_queue=pool_task_queue(inp.pool),
        start_to_close_timeout=MODEL_STEP_TIMEOUT,
        heartbeat_timeout=MODEL_HEARTBEAT_TIMEOUT,
        retry_policy=retry_policy(inp.retry),
    )


TOOL_BATCHES = "tool-batches-v1"
"""Patch id: a step's short tool calls run as one ``run_tools`` local activity (before it, one
``run_tool`` local activity per call; histories of that shape still replay)."""


TOOL_APPROVAL = "tool-approval-v1"
"""Patch id: calls of ``requireApproval`` tools wait for the ``decide_tool_call`` signal."""


FINISH_IN_STEP = "finish-in-step-v1"
"""Patch id: a sub-agent's final model step stores the agent's end in its own write (before
it, a ``finish_agent`` local activity after every sub-agent's last step)."""


class Approvals:
    """An agent workflow's decisions on its calls that wait for a person."""

    def __init__(self) -> None:
        self.decisions: dict[str, ToolCallDecision] = {}
        self.waiting: list[str] = []
        """Calls waiting now, by key."""

    def decide(self, decision: ToolCallDecision) -> None:
        self.decisions.setdefault(decision.call, decision)  # the first decision holds

    async def gate(
        self, job_uid: str, agent_id: str, step: ModelStepResult
    ) -> list[ToolCallResult]:
        """Wait for a decision on each of ``step``'s calls that needs one; record them. The
        denied calls' results (failed: the denial is the model's answer)."""
        gated = [r for r in step.tool_calls if r.kind == ToolCallKind.TOOL and r.approval]
        if not gated or not workflow.patched(TOOL_APPROVAL):
            return []
        keys = {r.index: f"{agent_id}/{step.step}/{r.index}" for r in gated}
        await _ledger(
            SwarmActivities.await_approval,
            ApprovalWait(job_uid, agent_id, step.step, list(keys)),
        )
        self.waiting += keys.values()
        try:
            await workflow.wait_condition(lambda: all(k in self.decisions for k in keys.values()))
        finally:
            self.waiting = [k for k in self.waiting if k not in keys.values()]
        denied = []
        for index, key in keys.items():
            decision = self.decisions[key]
            record = ApprovalRecord(job_uid, agent_id, step.step, index, decision, workflow.now())
            await _ledger(SwarmActivities.decide_tool_call, record)
            if not decision.approved:
                denied.append(ToolCallResult(index=index, status="failed"))
        return denied


async def _run_tools(
    job_uid: str,
    agent_id: str,
    step: ModelStepResult,
    retry: RetrySpec,
    approvals: Approvals | None = None,
) -> list[ToolCallResult]:
    """Run a step's tool calls in parallel: the short ones together in one local activity, each
    long one as its own regular activity; calls that need a person's approval wait for it."""
    denied = await approvals.gate(job_uid, agent_id, step) if approvals is not None else []
    skip = {r.index for r in denied}
    short: list[ToolCallInput] = []
    calls: list[Awaitable[Any]] = []
    for ref in step.tool_calls:
        if ref.kind != ToolCallKind.TOOL or ref.index in skip:
            continue
        inp = ToolCallInput(
            job_uid=job_uid, agent_id=agent_id, step=step.step, index=ref.index, tool=ref.name
        )
        if ref.local:
            short.append(inp)
        else:
            calls.append(
                workflow.execute_activity_method(
                    SwarmActivities.run_tool,
                    inp,
                    task_queue=workflow.info().task_queue,
                    start_to_close_timeout=TOOL_TIMEOUT * 10,
                    heartbeat_timeout=MODEL_HEARTBEAT_TIMEOUT,
                    retry_policy=retry_policy(retry),
                )
            )
    if short and workflow.patched(TOOL_BATCHES):
        calls.append(_tool_batch(short, retry))
    else:
        calls.extend(
            workflow.execute_local_activity_method(
                SwarmActivities.run_tool,
                inp,
                start_to_close_timeout=TOOL_TIMEOUT,
                retry_policy=retry_policy(retry),
            )
            for inp in short
        )
    results: list[ToolCallResult] = list(denied)
    for done in await asyncio.gather(*calls):
        results.extend(done.results if isinstance(done, ToolBatchResult) else [done])
    return results


async def _tool_batch(short: list[ToolCallInput], retry: RetrySpec) -> ToolBatchResult:
    return await workflow.execute_local_activity_method(
        SwarmActivities.run_tools,
        ToolBatchInput(
            calls=short,
            max_attempts=min(retry.max_attempts, 3),
            initial_interval_seconds=retry.initial_interval_seconds,
        ),
        start_to_close_timeout=TOOL_TIMEOUT,
        retry_policy=retry_policy(retry),
    )


async def _ledger(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await workflow.execute_local_activity(
        fn,
        args=list(args),
        start_to_close_timeout=LEDGER_TIMEOUT,
        retry_policy=LEDGER_RETRY,
    )


@workflow.defn
class SubagentWorkflow:
    """One sub-agent: its own context and tool loop, until it answers or hits ``maxSteps``."""

    def __init__(self) -> None:
        self._steps = 0
        self._approvals = Approvals()

    @workflow.query
    def steps(self) -> int:
        return self._steps

    @workflow.signal(name=DECIDE_SIGNAL)
    def decide_tool_call(self, decision: ToolCallDecision) -> None:
        self._approvals.decide(decision)

    @workflow.query
    def waiting_for_approval(self) -> list[str]:
        return list(self._approvals.waiting)

    @workflow.run
    async def run(self, inp: SubagentInput) -> AgentResult:
        result = AgentResult(
            agent_id=inp.agent_id, status=Phase.RUNNING, steps=0, tool_calls=0, model_seconds=0.0
        )
        try:
            final_turn = finished = False
            for step in range(1, inp.max_steps + 1):
                r = await _model_step(
                    ModelStepInput(
                        job_uid=inp.job_uid,
                        agent_id=inp.agent_id,
                        role=Role.SUBAGENT,
                        step=step,
                        pool=inp.pool,
                        model=inp.model,
                        tools=inp.tools,
                        max_tool_calls=inp.max_tool_calls,
                        max_tokens=inp.max_tokens,
                        retry=inp.retry,
                        stage=inp.stage,
                        final_turn=final_turn or step == inp.max_steps,
                        finish_agent=workflow.patched(FINISH_IN_STEP),
                    )
                )
                finished = r.agent_finished
                self._steps = result.steps = step
                result.model_seconds += r.model_seconds
                result.context_masked += r.context_masked
                result.context_dropped += r.context_dropped
                if r.stop_reason:
                    result.error = r.stop_reason
                result.tool_calls += sum(
                    1 for t in r.tool_calls if t.kind in (ToolCallKind.TOOL, ToolCallKind.REFUSED)
                )
                if r.budget_exhausted == "maxTokens":
                    result.budget_exhausted = r.budget_exhausted
                    break
                if r.refusal:
                    result.status, result.error = Phase.FAILED, f"ModelRefused: {r.refusal}"
                    await _ledger(SwarmActivities.finish_agent, result)
                    return result
                if r.final:
                    break
                await _run_tools(inp.job_uid, inp.agent_id, r, inp.retry, self._approvals)
                if r.budget_exhausted:
                    result.budget_exhausted = r.budget_exhausted
                    final_turn = True
            result.status = Phase.FAILED if result.error else Phase.SUCCEEDED
            if finished:
                return result  # the final step stored the agent's end
        except (asyncio.CancelledError, ActivityError) as e:
            if not is_cancelled_exception(e):
                result.status, result.error = Phase.FAILED, str(getattr(e, "cause", None) or e)
                await _ledger(SwarmActivities.finish_agent, result)
                return result
            result.status = Phase.CANCELLED
            await _ledger(SwarmActivities.finish_agent, result)
            raise asyncio.CancelledError from e
        await _ledger(SwarmActivities.finish_agent, result)
        return result


@workflow.defn
class SwarmWorkflow:
    """A swarm job: the orchestrator loop (or the single agent) and its stages."""

    def __init__(self) -> None:
        self._status = JobStatus()
        self._reason: str | None = None
        self._budget: str | None = None
        self._approvals = Approvals()

    @workflow.query
    def status(self) -> JobStatus:
        return self._status

    @workflow.signal(name=DECIDE_SIGNAL)
    def decide_tool_call(self, decision: ToolCallDecision) -> None:
        self._approvals.decide(decision)

    @workflow.query
    def waiting_for_approval(self) -> list[str]:
        return list(self._approvals.waiting)

    @workflow.run
    async def run(self, inp: SwarmJobInput) -> SwarmJobResult:
        spec = inp.spec
        started = workflow.now()
        role = Role.ORCHESTRATOR if spec.mode == Mode.SWARM else Role.SINGLE
        agent_id = agent_id_for(inp.uid, role)
        self._status.phase = Phase.RUNNING
        await _ledger(
            SwarmActivities.start_job,
            StartJobInput(
                uid=inp.uid,
                name=inp.name,
                namespace=inp.namespace,
                spec=spec,
                agent_id=agent_id,
                role=role,
            ),
        )
        phase, reason = Phase.SUCCEEDED, None
        main = asyncio.create_task(self._orchestrate(inp, agent_id, role))
        try:
            deadline = spec.limits.deadline_seconds
            try:
                await workflow.wait_condition(
                    lambda: main.done(), timeout=timedelta(seconds=deadline) if deadline else None
                )
            except TimeoutError:
                main.cancel()
                phase, reason = (
                    Phase.FAILED,
                    f"DeadlineExceeded: spec.limits.deadlineSeconds ({deadline}s)",
                )
            try:
                await main
            except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as e:
                if reason is None:  # not cancelled by our own deadline
                    if isinstance(e, asyncio.CancelledError) or is_cancelled_exception(e):
                        raise asyncio.CancelledError from e
                    cause = getattr(e, "cause", None) or e
                    phase, reason = Phase.FAILED, f"ModelCallFailed: {cause}"
            if reason is None and self._budget is not None:
                limit = getattr(spec.limits, _LIMIT_FIELDS[self._budget])
                phase, reason = (
                    Phase.FAILED,
                    f"BudgetExceeded: spec.limits.{self._budget} ({limit}) reached",
                )
            if reason is None and self._reason is not None:
                phase, reason = Phase.FAILED, self._reason
        except asyncio.CancelledError:
            main.cancel()
            with contextlib.suppress(BaseException):
                await main  # let every child finish its cancellation first
            await self._finish(
                inp, agent_id, Phase.CANCELLED, "Cancelled: the job was cancelled", started
            )
            raise
        return await self._finish(inp, agent_id, phase, reason, started)

    async def _finish(
        self, inp: SwarmJobInput, agent_id: str, phase: str, reason: str | None, started: object
    ) -> SwarmJobResult:
        s = self._status
        s.phase, s.reason = phase, reason
        wall = (workflow.now() - started).total_seconds()  # type: ignore[operator]
        outcome = SwarmJobResult.of(
            name=inp.name,
            uid=inp.uid,
            phase=phase,
            reason=reason,
            critical_steps=sum(st.main_steps + st.max_subagent_steps for st in s.stages),
            total_steps=s.total_steps,
            stages=s.stages,
            subagents=(s.subagents_spawned, s.subagents_succeeded, s.subagents_failed),
            model_seconds=sum(st.model_seconds for st in s.stages),
            wall_seconds=wall,
            context_masked=s.context_masked,
            context_dropped=s.context_dropped,
        )
        preview, quality = await _ledger(
            SwarmActivities.finish_job, FinishJobInput(outcome=outcome, final_agent_id=agent_id)
        )
        return dataclasses.replace(outcome, result=preview, quality=quality)

    async def _orchestrate(self, inp: SwarmJobInput, agent_id: str, role: str) -> None:
        spec = inp.spec
        s = self._status
        tools = list(spec.tools)
        if role == Role.ORCHESTRATOR:
            tools = [*ctl.CONTROL_TOOLS, *tools]
        max_steps = spec.orchestrator.max_steps
        final_turn = False
        for step in range(1, max_steps + 1):
            s.stage = step
            r = await _model_step(
                ModelStepInput(
                    job_uid=inp.uid,
                    agent_id=agent_id,
                    role=role,
                    step=step,
                    pool=spec.orchestrator.pool,
                    model=spec.orchestrator.model,
                    tools=tools,
                    max_tool_calls=spec.limits.max_tool_calls,
                    max_tokens=spec.limits.max_tokens,
                    retry=spec.retry,
                    stage=step,
                    profile=spec.orchestrator.profile,
                    final_turn=final_turn or step == max_steps,
                )
            )
            s.orchestrator_steps = step
            s.total_steps += 1
            stage = StageSummary(
                stage=step,
                main_steps=1,
                max_subagent_steps=0,
                subagents=0,
                model_seconds=r.model_seconds,
            )
            s.stages.append(stage)
            s.critical_steps += 1
            s.context_masked += r.context_masked
            s.context_dropped += r.context_dropped
            if r.stop_reason:
                self._reason = r.stop_reason
            self._budget = self._budget or r.budget_exhausted
            if r.refusal:
                self._reason = f"ModelRefused: {r.refusal}"
                return
            if self._budget == "maxTokens" or self._over_critical_steps(spec) or r.final:
                return
            await asyncio.gather(
                _run_tools(inp.uid, agent_id, r, spec.retry, self._approvals),
                self._run_stage(inp, agent_id, r, stage),
            )
            if self._budget == "maxTokens" or self._over_critical_steps(spec):
                return
            final_turn = self._budget is not None
        self._reason = f"MaxStepsExceeded: spec.orchestrator.maxSteps ({max_steps})"

    def _over_critical_steps(self, spec: SwarmJobSpec) -> bool:
        """End the job once its critical path passes ``spec.limits.maxCriticalSteps``."""
        limit = spec.limits.max_critical_steps
        if limit is None or self._status.critical_steps <= limit:
            return False
        if not workflow.patched("max-critical-steps"):
            return False
        self._reason = (
            f"BudgetExceeded: spec.limits.maxCriticalSteps ({limit}) exceeded "
            f"({self._status.critical_steps} critical steps)"
        )
        return True

    async def _run_stage(
        self, inp: SwarmJobInput, agent_id: str, r: ModelStepResult, stage: StageSummary
    ) -> None:
        """Run the sub-agents a step spawned, bounded by maxConcurrent; record their answers."""
        if not r.spawns:
            return
        spec = inp.spec
        s = self._status
        slots = asyncio.Semaphore(spec.subagents.max_concurrent)
        stage.subagents = len(r.spawns)
        s.subagents_spawned += len(r.spawns)

        async def run_child(ref_agent: str) -> AgentResult:
            async with slots:
                s.subagents_running += 1
                try:
                    return await workflow.execute_child_workflow(
                        SubagentWorkflow.run,
                        SubagentInput(
                            job_uid=inp.uid,
                            agent_id=ref_agent,
                            stage=stage.stage,
                            pool=spec.subagents.pool,
                            model=spec.subagents.model,
                            tools=list(spec.subagent_tools),
                            max_steps=spec.subagents.max_steps,
                            max_tool_calls=spec.limits.max_tool_calls,
                            max_tokens=spec.limits.max_tokens,
                            retry=spec.retry,
                        ),
                        id=f"swarmjob-{ref_agent}",
                        # A child still running when the job closes is asked to cancel (and
                        # records what it had), never terminated mid-write.
                        parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                        task_queue=workflow.info().task_queue,
                    )
                except ChildWorkflowError as e:
                    if is_cancelled_exception(e):
                        raise
                    return AgentResult(
                        agent_id=ref_agent,
                        status=Phase.FAILED,
                        steps=0,
                        tool_calls=0,
                        model_seconds=0.0,
                        error=str(e.cause or e),
                    )
                finally:
                    s.subagents_running -= 1

        results = await asyncio.gather(*(run_child(ref.agent_id) for ref in r.spawns))
        for res in results:
            s.total_steps += res.steps
            s.context_masked += res.context_masked
            s.context_dropped += res.context_dropped
            if res.status == Phase.SUCCEEDED:
                s.subagents_succeeded += 1
            else:
                s.subagents_failed += 1
            if res.budget_exhausted and self._budget != "maxTokens":
                self._budget = res.budget_exhausted
        stage.max_subagent_steps = max(res.steps for res in results)
        stage.model_seconds += max(res.model_seconds for res in results)
        s.critical_steps += stage.max_subagent_steps
        by_call: dict[int, list[str]] = {}
        for ref in r.spawns:
            by_call.setdefault(ref.call_index, []).append(ref.agent_id)
        for call_index, children in sorted(by_call.items()):
            await _ledger(
                SwarmActivities.spawn_result,
                SpawnResultInput(
                    job_uid=inp.uid,
                    agent_id=agent_id,
                    step=r.step,
                    call_index=call_index,
                    children=children,
                ),
            )
