"""The model-step activity: one agent step, from its conversation to the calls it makes.

A step reads the agent's conversation from the ledger, calls the model through the pool's
client (on the pool's own task queue), and stores the answer, its tool calls and the
sub-agents it spawns in one idempotent write, so a retried step never calls the model twice for
a stored answer.

Real models do what the scripted one never does, and a step answers each in kind: a prompt
near the pool's context window is cut (:func:`~kswarm.workflows.prompts.fit_context`), and a
400 for context length cuts it harder once before the step fails with ContextLengthExceeded;
tool calls written as JSON in the text are read back when the pool says so; a refused call
(unknown tool, arguments that fail the schema) goes back to the model as a tool error, until
the agent's error budget (``spec.limits.maxToolErrors``) ends it; the same calls with the same
arguments ``spec.limits.maxRepeatedCalls`` steps in a row end it with RepeatedToolCall. The
result's ``stop_reason`` says why an agent was ended.
"""

from __future__ import annotations

import itertools
import json
import zlib
from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kswarm.errors import KswarmError
from kswarm.ledger import AgentEnd, ModelCallRecord
from kswarm.llm.chats import Attempt, ChatRequest
from kswarm.llm.content_calls import calls_from_content
from kswarm.llm.errors import LLMError, context_overflow
from kswarm.llm.pacing import RetryPolicy
from kswarm.llm.pools import PoolConfig
from kswarm.spec import ContextSpec, Limits, Phase, RolloutSpec, parse_spec
from kswarm.telemetry import metrics, tracing
from kswarm.tools import control as ctl
from kswarm.workflows.bookkeeping import answer_call
from kswarm.workflows.inputs import ModelStepInput, ModelStepResult, ToolCallRef
from kswarm.workflows.prompts import (
    ContextFit,
    fit_context,
    last_replica,
    pending_tool_messages,
    prompt_messages,
    step_of,
)
from kswarm.workflows.resources import ActivityResources, application_error, heartbeating
from kswarm.workflows.step_calls import classify_calls

__all__ = ["ModelStepActivities", "call_signature"]

JOB_SPECS_CACHED = 256


@dataclass(frozen=True)
class _JobSettings:
    limits: Limits
    context: ContextSpec
    rollout: RolloutSpec | None
    require_approval: tuple[str, ...] = ()
    """The job's own ``spec.requireApproval``."""


"""Jobs whose limits and context settings a worker keeps in memory (read once per job)."""


class ContextLengthExceeded(LLMError):
    """The prompt is longer than the model's context window even after context management."""


def call_signature(message: dict[str, Any]) -> str:
    """The calls of an assistant message with their arguments, as one comparable string."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {} if isinstance(call, dict) else {}
        try:
            args = json.dumps(json.loads(fn.get("arguments") or "{}"), sort_keys=True)
        except ValueError:
            args = str(fn.get("arguments"))
        calls.append(f"{fn.get('name')}({args})")
    return ";".join(sorted(calls))


class ModelStepActivities(ActivityResources):
    """``model_step``: one model call of an agent and what its answer asks for."""

    @activity.defn(name="model_step")
    async def model_step(self, inp: ModelStepInput) -> ModelStepResult:
        try:
            async with heartbeating():
                return await self._model_step(inp)
        except ContextLengthExceeded as e:
            raise ApplicationError(
                f"ContextLengthExceeded: {e}", type="ContextLengthExceeded", non_retryable=True
            ) from e
        except LLMError as e:
            # The client has already retried as the job's retry policy says.
            raise ApplicationError(
                f"{type(e).__name__}: {e}", type=type(e).__name__, non_retryable=True
            ) from e
        except KswarmError as e:
            raise application_error(e) from e

    async def _model_step(self, inp: ModelStepInput) -> ModelStepResult:
        pool = self.pools.get(inp.pool)
        model = inp.model or pool.model
        history, prev_calls = await self.ledger.get_conversation(inp.agent_id)
        settings = await self._job_settings(inp.job_uid)
        limits = settings.limits
        last = history[-1] if history else {}
        usage = (0, 0, 0.0, 0.0)
        new_messages: list[dict[str, Any]] = []
        if last.get("role") == "assistant" and step_of(last) == inp.step:
            assistant = last  # stored by an earlier attempt: never call the model twice
        else:
            new_messages = pending_tool_messages(history, prev_calls)
            assistant, usage = await self._call_model(
                inp, pool, model, history + new_messages, settings
            )
            new_messages.append(assistant)
        rows, spawns, final = await classify_calls(
            self.ledger, self.tools, inp, assistant, require_approval=settings.require_approval
        )
        earlier = history[:-1] if assistant is last else history
        stop_reason = _guard(earlier, assistant, rows, limits)
        if stop_reason is not None:
            final = True
            for r in rows:
                if r["status"] == "pending":
                    r.update(status="refused", error=f"not run: {stop_reason}", budgeted=False)
        refusal = assistant.get("refusal") or None
        # A final answer ends the agent as its workflow would: Failed with the stop reason when
        # there is one, else Succeeded (a refusal, and an agent ended by its step limit or a
        # budget, still end through ``finish_agent``).
        finish = None
        if inp.finish_agent and final and not refusal:
            answer = answer_call(assistant)
            finish = AgentEnd(
                status=Phase.FAILED if stop_reason else Phase.SUCCEEDED,
                answer=str(assistant.get("content") or "") if answer is None else answer,
                error=stop_reason,
            )
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
            finish=finish,
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
                ToolCallRef(
                    index=r["index"],
                    name=r["tool"],
                    kind=kind,
                    local=c.get("local", True),
                    approval=c.get("approval", False),
                )
            )
        refs.sort(key=lambda t: t.index)
        meta = assistant.get("_kswarm") or {}
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
            stop_reason=stop_reason,
            context_masked=int(meta.get("masked", 0)),
            context_dropped=int(meta.get("dropped", 0)),
            refusal=str(refusal) if refusal else None,
            agent_finished=finish is not None,
        )

    async def _job_settings(self, job_uid: str) -> _JobSettings:
        """The job's limits, context settings and sampling, read from the ledger once per job
        (specs are immutable)."""
        cache: dict[str, _JobSettings] = self.__dict__.setdefault("_job_specs", {})
        found = cache.get(job_uid)
        if found is None:
            job = await self.ledger.get_job(job_uid)
            spec = parse_spec(job.spec) if job is not None else None
            found = (
                _JobSettings(spec.limits, spec.context, spec.rollout, spec.require_approval)
                if spec
                else _JobSettings(Limits(), ContextSpec(), None)
            )
            if len(cache) >= JOB_SPECS_CACHED:
                cache.pop(next(iter(cache)))
            cache[job_uid] = found
        return found

    async def _call_model(
        self,
        inp: ModelStepInput,
        pool: PoolConfig,
        model: str,
        history: list[dict[str, Any]],
        settings: _JobSettings,
    ) -> tuple[dict[str, Any], tuple[int, int, float, float]]:
        context = settings.context
        specs = self.tools.openai_specs(t for t in inp.tools if t not in ctl.CONTROL_TOOLS)
        if inp.role == "orchestrator":
            specs = ctl.control_specs() + specs
        elif pool.tool_choice == "required":
            specs = [*specs, ctl.answer_spec()]
        extra: dict[str, Any] = {}
        if inp.profile != "swarm":
            extra["kswarm_profile"] = inp.profile
        messages = prompt_messages(history, masking=context.enabled)
        fit = ContextFit(messages=messages)
        window = await self.client.context_window(pool) if context.enabled else None
        scale = _token_scale(history)
        if window is not None:
            budget = int(window * context.threshold) - (pool.max_output_tokens or 0)
            fit = fit_context(
                messages, specs, budget=int(budget / scale), keep_steps=context.keep_steps
            )
        choice = pool.tool_choice if specs else None
        if pool.return_token_ids:
            extra["return_token_ids"] = True
            extra["logprobs"] = True
        temperature = 0.0  # a lone job samples greedily; a rollout sample as its group says
        if settings.rollout is not None:
            temperature = settings.rollout.temperature
            extra["seed"] = _call_seed(settings.rollout.seed, inp.agent_id, inp.step)
        request = ChatRequest(
            model=model,
            messages=fit.messages,
            tools=specs or None,
            tool_choice="none" if inp.final_turn else choice,
            max_tokens=pool.max_output_tokens,
            temperature=temperature,
            extra_body=extra,
            prefix_key=f"{inp.job_uid}/{inp.agent_id}",
            replica_hint=last_replica(history),
            stream=pool.stream,
            check_arguments=False,  # arguments that are not JSON go back as a tool error
        )
        # Attempt numbers run on over the activity's retries and the one retry after a cut.
        offset = (activity.info().attempt - 1) * inp.retry.max_attempts * 2
        numbers = itertools.count(offset + 1)

        async def on_attempt(a: Attempt) -> None:
            metrics.record_model_attempt(pool.name, a)
            tracing.record_attempt(a)
            self.ledger.record_model_call(
                ModelCallRecord(
                    job_uid=inp.job_uid,
                    agent_id=inp.agent_id,
                    step=inp.step,
                    attempt=next(numbers),
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
                    prompt_token_ids=a.prompt_token_ids,
                    completion_token_ids=a.completion_token_ids,
                    logprobs=a.logprobs,
                )
            )

        retry = RetryPolicy(
            max_attempts=inp.retry.max_attempts,
            initial_interval=inp.retry.initial_interval_seconds,
            backoff_coefficient=inp.retry.backoff_coefficient,
            maximum_interval=inp.retry.maximum_interval_seconds,
        )
        try:
            result = await self.client.chat(pool, request, retry=retry, on_attempt=on_attempt)
        except LLMError as e:
            overflow, limit = context_overflow(e)
            if not overflow:
                raise
            if not context.enabled:
                raise ContextLengthExceeded(f"{e} (spec.context.enabled is false)") from e
            # Once: cut to half of the window the server names (or of the one we knew).
            known = limit or window
            if known is None:
                raise ContextLengthExceeded(f"{e} (the pool's context window is unknown)") from e
            budget = known // 2 - (pool.max_output_tokens or 0)
            fit = fit_context(messages, specs, budget=int(budget / scale), keep_steps=1)
            request.messages = fit.messages
            try:
                result = await self.client.chat(pool, request, retry=retry, on_attempt=on_attempt)
            except LLMError as again:
                if context_overflow(again)[0]:
                    raise ContextLengthExceeded(
                        f"{again} (after masking {fit.masked} tool results and dropping "
                        f"{fit.dropped} messages)"
                    ) from again
                raise
        message = dict(result.message)
        message["role"] = "assistant"
        if pool.tool_calls_in_content and not message.get("tool_calls"):
            calls = calls_from_content(message.get("content"))
            if calls:
                message["tool_calls"], message["content"] = calls, None
        message["_kswarm"] = {"step": inp.step, "replica": result.replica}
        if fit.masked or fit.dropped:
            message["_kswarm"].update(masked=fit.masked, dropped=fit.dropped)
        if fit.tokens and result.input_tokens:
            # The server's count of this prompt against ours: the next step's estimate scale.
            message["_kswarm"].update(estimate=fit.tokens, prompt_tokens=result.input_tokens)
        model_seconds = (
            result.model_seconds if result.model_seconds is not None else result.latency_seconds
        )
        return message, (
            result.input_tokens,
            result.output_tokens,
            float(model_seconds or 0.0),
            float(result.latency_seconds or 0.0),
        )


def _token_scale(history: list[dict[str, Any]]) -> float:
    """Server tokens per estimated token, from the agent's last step that recorded both (the
    estimate counts characters; tokenizers differ), within 0.25 to 4; 1 when none did."""
    for m in reversed(history):
        meta = m.get("_kswarm")
        if m.get("role") == "assistant" and isinstance(meta, dict) and meta.get("estimate"):
            ratio = float(meta.get("prompt_tokens") or 0) / float(meta["estimate"])
            return min(4.0, max(0.25, ratio))
    return 1.0


def _guard(
    history: list[dict[str, Any]],
    assistant: dict[str, Any],
    rows: list[dict[str, Any]],
    limits: Limits,
) -> str | None:
    """Why the agent must end after this step (error budget spent, the same calls repeated),
    or ``None``. The count of refused calls so far rides on the assistant message."""
    meta = assistant.setdefault("_kswarm", {})
    previous = [m for m in history if m.get("role") == "assistant" and step_of(m) is not None]
    before = int((previous[-1].get("_kswarm") or {}).get("tool_errors", 0)) if previous else 0
    refused = [r for r in rows if r["status"] == "refused"]
    meta["tool_errors"] = errors = before + len(refused)
    if refused and errors > limits.max_tool_errors:
        return (
            f"ToolErrorBudgetExceeded: {errors} refused tool calls, more than "
            f"spec.limits.maxToolErrors ({limits.max_tool_errors}); the last: "
            f"{refused[-1].get('error')}"
        )
    signature = call_signature(assistant)
    n = limits.max_repeated_calls
    if signature and len(previous) >= n - 1:
        if all(call_signature(m) == signature for m in previous[-(n - 1) :]):
            return f"RepeatedToolCall: {signature[:200]} made {n} steps in a row"
    return None


def _call_seed(sample_seed: int, agent_id: str, step: int) -> int:
    """One seed per model call of a sample: agents of one sample draw apart, and a retried
    call draws the same answer again."""
    digest = zlib.crc32(f"{sample_seed}/{agent_id}/{step}".encode())
    return digest & 0x7FFFFFFF
