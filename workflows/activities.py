"""Activities of the swarm: model steps, tool calls and the ledger's bookkeeping.

Activities hold the heavy data; workflows see ids and small summaries. A model step reads the
agent's conversation from the ledger, calls the model through the pool's client, and stores the
answer, its tool calls and any sub-agents it spawns in one idempotent write, so a retried or
replayed step neither calls the model twice for a stored answer nor runs a tool twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kswarm.errors import KswarmError, ToolError
from kswarm.ledger import AgentRecord, Ledger, ModelCallRecord, StageRecord, ToolCallKey
from kswarm.ledger.repository import utcnow
from kswarm.llm.chats import Attempt, ChatRequest
from kswarm.llm.client import LLMClient
from kswarm.llm.errors import LLMError
from kswarm.llm.pacing import RetryPolicy
from kswarm.llm.pools import PoolConfig, PoolRegistry
from kswarm.sim.tasks import score_answer
from kswarm.telemetry import metrics, tracing
from kswarm.tools import ToolContext, ToolRegistry, validate_arguments
from kswarm.tools import control as ctl
from kswarm.workflows.inputs import (
    AgentResult,
    FinishJobInput,
    ModelStepInput,
    ModelStepResult,
    SpawnRef,
    SpawnResultInput,
    StageSummary,
    StartJobInput,
    ToolCallInput,
    ToolCallRef,
    ToolCallResult,
)

__all__ = ["SwarmActivities", "agent_id_for"]

RESULT_PREVIEW_CHARS = 4000
VISIBLE_TOOL_STEPS = 3
"""Tool results older than this many steps are elided from the prompt (observation masking);
the agent's own notes stay. They remain whole in the ledger."""
OLD_REASONING_CHARS = 300
"""Assistant text older than that horizon is cut to this many characters (its head: notes)."""
HEARTBEAT_SECONDS = 5.0


def agent_id_for(job_uid: str, local: str) -> str:
    return f"{job_uid}/{local}"


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if not k.startswith("_")}


def _step_of(message: dict[str, Any]) -> int | None:
    meta = message.get("_kswarm")
    return int(meta["step"]) if isinstance(meta, dict) and "step" in meta else None


def _last_replica(history: list[dict[str, Any]]) -> str | None:
    """The replica that answered the agent's last model call: its prefix cache holds the
    conversation, so the next call should go there (``ChatRequest.replica_hint``)."""
    for m in reversed(history):
        meta = m.get("_kswarm")
        if m.get("role") == "assistant" and isinstance(meta, dict):
            replica = meta.get("replica")
            return replica if isinstance(replica, str) else None
    return None


def _prompt_messages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = [s for m in history if (s := _step_of(m)) is not None]
    horizon = (max(steps) - VISIBLE_TOOL_STEPS + 1) if steps else 0
    out: list[dict[str, Any]] = []
    for m in history:
        msg = _public(m)
        meta = m.get("_kswarm")
        if (
            msg.get("role") == "tool"
            and isinstance(meta, dict)
            and meta.get("tool") not in ctl.CONTROL_TOOLS
            and int(meta.get("after_step", horizon)) < horizon
        ):
            msg = {**msg, "content": "[elided]"}
        elif msg.get("role") == "assistant" and (_step_of(m) or horizon) < horizon:
            content = str(msg.get("content") or "")
            if len(content) > OLD_REASONING_CHARS:
                msg = {**msg, "content": content[:OLD_REASONING_CHARS] + " [...]"}
        out.append(msg)
    return out


def _pending_tool_messages(history: list[dict[str, Any]], calls: list[Any]) -> list[dict[str, Any]]:
    """Tool messages answering the previous step's calls, from that step's ledger rows."""
    last = history[-1] if history else {}
    prev = _step_of(last)
    if last.get("role") != "assistant" or prev is None or not last.get("tool_calls"):
        return []
    by_index = {c.index: c for c in calls}
    out = []
    for i, call in enumerate(last.get("tool_calls") or []):
        row = by_index.get(i)
        if row is None or row.status in ("pending", "started"):
            content = "error: the call did not complete"
        elif row.status == "succeeded":
            content = json.dumps(row.result, separators=(",", ":"))
        else:
            content = f"error: {row.error or row.status}"
        out.append(
            {
                "role": "tool",
                "tool_call_id": call.get("id", f"call_{i}"),
                "content": content,
                "_kswarm": {"after_step": prev, "tool": row.tool if row else ""},
            }
        )
    return out


def _application_error(e: Exception) -> ApplicationError:
    retryable = bool(getattr(e, "retryable", False))
    return ApplicationError(
        f"{type(e).__name__}: {e}", type=type(e).__name__, non_retryable=not retryable
    )


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


class SwarmActivities:
    """The activities, bound to one process's ledger, model client, pools and tools."""

    def __init__(
        self, ledger: Ledger, client: LLMClient, pools: PoolRegistry, tools: ToolRegistry
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.pools = pools
        self.tools = tools

    # ------------------------------------------------------------------ job bookkeeping

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
        history = await self.ledger.get_messages(result.agent_id)
        answer = next(
            (
                str(m.get("content") or "")
                for m in reversed(history)
                if m.get("role") == "assistant"
            ),
            "",
        )
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
        children = []
        for child in inp.children:
            a = await self.ledger.get_agent(child)
            if a is not None:
                children.append({"agent": a.name, "status": a.status, "answer": a.answer or ""})
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
        quality = score_answer(job.spec.get("task", ""), answer) if job and answer else None
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
            },
        )
        await asyncio.gather(*(self._record_stage(out.uid, st) for st in out.stages))
        await self.ledger.update_agent(
            inp.final_agent_id, status=out.phase, answer=answer, finished_at=utcnow()
        )
        await self.ledger.flush()
        return answer[:RESULT_PREVIEW_CHARS], quality

    async def _final_answer(self, agent_id: str) -> str:
        for call in reversed(await self.ledger.get_tool_calls(agent_id)):
            if call.tool == ctl.FINISH and isinstance(call.arguments, dict):
                return str(call.arguments.get("answer", ""))
        history = await self.ledger.get_messages(agent_id)
        for m in reversed(history):
            if m.get("role") == "assistant" and not m.get("tool_calls"):
                return str(m.get("content") or "")
        return ""

    # ------------------------------------------------------------------ tools

    @activity.defn(name="run_tool")
    async def run_tool(self, inp: ToolCallInput) -> ToolCallResult:
        key = ToolCallKey(inp.job_uid, inp.agent_id, inp.step, inp.index)
        try:
            tool = self.tools.get(inp.tool)
            begin = await self.ledger.begin_tool_call(key, tool=inp.tool, arguments=None)
        except KswarmError as e:
            raise _application_error(e) from e
        if begin.outcome == "stored":
            return ToolCallResult(index=inp.index, status=begin.status, deduplicated=True)
        if begin.outcome != "run":
            return ToolCallResult(index=inp.index, status="refused")
        ctx = ToolContext(
            key=str(key), job_uid=inp.job_uid, agent_id=inp.agent_id, attempt=begin.attempt
        )
        started = time.perf_counter()
        try:
            result = await tool.fn(dict(begin.arguments or {}), ctx)
        except ToolError as e:
            if e.retryable and activity.info().attempt < 3:
                raise _application_error(e) from e
            await self.ledger.finish_tool_call(
                key, status="failed", error=str(e), duration_seconds=time.perf_counter() - started
            )
            return ToolCallResult(index=inp.index, status="failed")
        await self.ledger.finish_tool_call(
            key, status="succeeded", result=result, duration_seconds=time.perf_counter() - started
        )
        return ToolCallResult(index=inp.index, status="succeeded")

    # ------------------------------------------------------------------ model steps

    @activity.defn(name="model_step")
    async def model_step(self, inp: ModelStepInput) -> ModelStepResult:
        try:
            async with _heartbeating():
                return await self._model_step(inp)
        except LLMError as e:
            # The client has already retried as the job's retry policy says.
            raise ApplicationError(
                f"{type(e).__name__}: {e}", type=type(e).__name__, non_retryable=True
            ) from e
        except KswarmError as e:
            raise _application_error(e) from e

    async def _model_step(self, inp: ModelStepInput) -> ModelStepResult:
        pool = self.pools.get(inp.pool)
        model = inp.model or pool.model
        history, prev_calls = await self.ledger.get_conversation(inp.agent_id)
        last = history[-1] if history else {}
        usage = (0, 0, 0.0, 0.0)
        new_messages: list[dict[str, Any]] = []
        if last.get("role") == "assistant" and _step_of(last) == inp.step:
            assistant = last  # stored by an earlier attempt: never call the model twice
        else:
            new_messages = _pending_tool_messages(history, prev_calls)
            assistant, usage = await self._call_model(inp, pool, model, history + new_messages)
            new_messages.append(assistant)
        rows, spawns, final = await self._classify(inp, assistant)
        stored, total_tokens = await self.ledger.record_model_step(
            job_uid=inp.job_uid,
            agent_id=inp.agent_id,
            step=inp.step,
            seq=len(history),
            messages=new_messages,
            tool_calls=rows,
            max_tool_calls=inp.max_tool_calls,
            input_tokens=usage[0],
            output_tokens=usage[1],
        )
        budget: str | None = None
        if any((r.get("error") or "").endswith("maxToolCalls") for r in stored):
            budget = "maxToolCalls"
        if inp.max_tokens is not None and total_tokens >= inp.max_tokens:
            budget = "maxTokens"
        kinds = {r["index"]: r for r in rows}
        refs = []
        for r in stored:
            c = kinds.get(r["index"], {})
            kind = c.get("kind", "tool")
            if r["status"] == "refused":
                kind = "refused"
            elif r["status"] != "pending" and kind == "tool":
                kind = "done"
            refs.append(
                ToolCallRef(index=r["index"], name=r["tool"], kind=kind, local=c.get("local", True))
            )
        refs.sort(key=lambda t: t.index)
        return ModelStepResult(
            step=inp.step,
            tool_calls=refs,
            spawns=spawns,
            final=final,
            input_tokens=usage[0],
            output_tokens=usage[1],
            model_seconds=usage[2],
            latency_seconds=usage[3],
            budget_exhausted=budget,
        )

    async def _call_model(
        self,
        inp: ModelStepInput,
        pool: PoolConfig,
        model: str,
        history: list[dict[str, Any]],
    ) -> tuple[dict[str, Any], tuple[int, int, float, float]]:
        specs = self.tools.openai_specs(t for t in inp.tools if t not in ctl.CONTROL_TOOLS)
        if inp.role == "orchestrator":
            specs = ctl.control_specs() + specs
        extra: dict[str, Any] = {}
        if inp.profile != "swarm":
            extra["kswarm_profile"] = inp.profile
        request = ChatRequest(
            model=model,
            messages=_prompt_messages(history),
            tools=specs or None,
            tool_choice="none" if inp.final_turn else ("auto" if specs else None),
            max_tokens=None,
            temperature=0.0,
            extra_body=extra,
            prefix_key=f"{inp.job_uid}/{inp.agent_id}",
            replica_hint=_last_replica(history),
            stream=pool.stream,
        )
        offset = (activity.info().attempt - 1) * inp.retry.max_attempts

        async def on_attempt(a: Attempt) -> None:
            metrics.record_model_attempt(pool.name, a)
            tracing.record_attempt(a)
            self.ledger.record_model_call(
                ModelCallRecord(
                    job_uid=inp.job_uid,
                    agent_id=inp.agent_id,
                    step=inp.step,
                    attempt=offset + a.number,
                    pool=pool.name,
                    model=model,
                    status=a.outcome,
                    replica=a.replica,
                    http_status=a.http_status,
                    error=a.error,
                    input_tokens=a.input_tokens,
                    output_tokens=a.output_tokens,
                    cached_tokens=a.cached_tokens,
                    ttft_seconds=a.ttft_seconds,
                    latency_seconds=a.latency_seconds,
                    model_seconds=a.model_seconds,
                    started_at=a.started_at,
                )
            )

        retry = RetryPolicy(
            max_attempts=inp.retry.max_attempts,
            initial_interval=inp.retry.initial_interval_seconds,
            backoff_coefficient=inp.retry.backoff_coefficient,
            maximum_interval=inp.retry.maximum_interval_seconds,
        )
        result = await self.client.chat(pool, request, retry=retry, on_attempt=on_attempt)
        message = dict(result.message)
        message["role"] = "assistant"
        message["_kswarm"] = {"step": inp.step, "replica": result.replica}
        model_seconds = (
            result.model_seconds if result.model_seconds is not None else result.latency_seconds
        )
        return message, (
            result.input_tokens,
            result.output_tokens,
            float(model_seconds or 0.0),
            float(result.latency_seconds or 0.0),
        )

    async def _classify(
        self, inp: ModelStepInput, assistant: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[SpawnRef], bool]:
        """Decide what each tool call of a step is; create the sub-agents it spawns."""
        calls = assistant.get("tool_calls") or []
        rows: list[dict[str, Any]] = []
        spawns: list[SpawnRef] = []
        new_agents: list[AgentRecord] = []
        first_messages: dict[str, list[dict[str, Any]]] = {}
        templates: dict[str, str] = {}
        final = not calls
        allowed = set(inp.tools)

        def spawn(call_index: int, name: str, task: str, prompt: str | None) -> None:
            local = f"s{inp.stage:03d}-{len(spawns):03d}"
            agent_id = agent_id_for(inp.job_uid, local)
            system = ctl.system_prompt("subagent", prompt or "")
            spawns.append(SpawnRef(call_index=call_index, agent_id=agent_id, name=name or local))
            new_agents.append(
                AgentRecord(
                    id=agent_id,
                    job_uid=inp.job_uid,
                    parent_id=inp.agent_id,
                    role="subagent",
                    name=name or local,
                    task=task,
                    system_prompt=system,
                    stage=inp.stage,
                )
            )
            first_messages[agent_id] = [
                {"role": "system", "content": system},
                {"role": "user", "content": task},
            ]

        for i, call in enumerate(calls):
            fn = call.get("function") or {}
            name = str(fn.get("name", ""))
            row: dict[str, Any] = {
                "index": i,
                "tool": name,
                "call_id": call.get("id"),
                "status": "pending",
                "kind": "tool",
                "budgeted": False,
            }
            rows.append(row)
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError as e:
                row.update(status="refused", error=f"arguments are not valid JSON: {e}")
                row["arguments"] = {"raw": str(fn.get("arguments"))[:2000]}
                continue
            row["arguments"] = args
            if name in ctl.CONTROL_TOOLS and inp.role == "orchestrator":
                if not isinstance(args, dict):
                    row.update(status="refused", error=f"{name}: arguments must be an object")
                elif name == ctl.FINISH:
                    row.update(status="succeeded", result={"finished": True}, kind="finish")
                    final = True
                elif name == ctl.CREATE_SUBAGENT:
                    templates[str(args.get("name", ""))] = str(args.get("system_prompt", ""))
                    row.update(
                        status="succeeded", result={"created": args.get("name")}, kind="done"
                    )
                    new_agents.append(
                        AgentRecord(
                            id=agent_id_for(inp.job_uid, f"tpl-{args.get('name', '')}"),
                            job_uid=inp.job_uid,
                            parent_id=inp.agent_id,
                            role="template",
                            name=str(args.get("name", "")),
                            task="",
                            system_prompt=str(args.get("system_prompt", "")),
                            status="Defined",
                        )
                    )
                elif name == ctl.ASSIGN_TASK:
                    agent = str(args.get("agent", ""))
                    prompt = templates.get(agent)
                    if prompt is None:
                        tpl = await self.ledger.get_agent(agent_id_for(inp.job_uid, f"tpl-{agent}"))
                        prompt = tpl.system_prompt if tpl else None
                    if prompt is None:
                        row.update(
                            status="refused",
                            error=f"assign_task: no sub-agent named {agent!r}; create it first",
                        )
                    else:
                        spawn(i, agent, str(args.get("task", "")), prompt)
                        row["kind"] = "spawn"
                else:
                    tasks = args.get("tasks")
                    if not isinstance(tasks, list) or not tasks:
                        row.update(
                            status="refused",
                            error="spawn_subagents: tasks must be a non-empty list",
                        )
                    else:
                        for t in tasks:
                            t = t if isinstance(t, dict) else {"task": str(t)}
                            spawn(i, str(t.get("name", "")), str(t.get("task", "")), None)
                        row["kind"] = "spawn"
                continue
            if name not in self.tools.tools:
                row.update(status="refused", error=f"unknown tool {name!r}")
                continue
            if name not in allowed:
                row.update(status="refused", error=f"tool {name!r} is not in the job's allow-list")
                continue
            try:
                validate_arguments(self.tools.get(name), args)
            except ToolError as e:
                row.update(status="refused", error=str(e))
                continue
            row["budgeted"] = True
            row["local"] = self.tools.get(name).local
        if inp.final_turn:
            final = True
        if new_agents:
            await self.ledger.upsert_agents(new_agents)
            await asyncio.gather(
                *(
                    self.ledger.append_messages(inp.job_uid, agent_id, 0, msgs)
                    for agent_id, msgs in first_messages.items()
                )
            )
        return rows, spawns, final
