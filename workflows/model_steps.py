"""The model-step activity: one agent step, from its conversation to the calls it makes.

A step reads the agent's conversation from the ledger, calls the model through the pool's
client (on the pool's own task queue), and stores the answer, its tool calls and the
sub-agents it spawns in one idempotent write, so a retried step never calls the model twice for
a stored answer.
"""

from __future__ import annotations

import zlib
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kswarm.errors import KswarmError
from kswarm.ledger import ModelCallRecord
from kswarm.llm.chats import Attempt, ChatRequest
from kswarm.llm.errors import LLMError
from kswarm.llm.pacing import RetryPolicy
from kswarm.llm.pools import PoolConfig
from kswarm.telemetry import metrics, tracing
from kswarm.tools import control as ctl
from kswarm.workflows.inputs import ModelStepInput, ModelStepResult, ToolCallRef
from kswarm.workflows.prompts import last_replica, pending_tool_messages, prompt_messages, step_of
from kswarm.workflows.resources import ActivityResources, application_error, heartbeating
from kswarm.workflows.step_calls import classify_calls

__all__ = ["ModelStepActivities"]


class ModelStepActivities(ActivityResources):
    """``model_step``: one model call of an agent and what its answer asks for."""

    @activity.defn(name="model_step")
    async def model_step(self, inp: ModelStepInput) -> ModelStepResult:
        try:
            async with heartbeating():
                return await self._model_step(inp)
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
        last = history[-1] if history else {}
        usage = (0, 0, 0.0, 0.0)
        new_messages: list[dict[str, Any]] = []
        if last.get("role") == "assistant" and step_of(last) == inp.step:
            assistant = last  # stored by an earlier attempt: never call the model twice
        else:
            new_messages = pending_tool_messages(history, prev_calls)
            assistant, usage = await self._call_model(inp, pool, model, history + new_messages)
            new_messages.append(assistant)
        rows, spawns, final = await classify_calls(self.ledger, self.tools, inp, assistant)
        refusal = assistant.get("refusal") or None
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
            refusal=str(refusal) if refusal else None,
        )

    _samplings: dict[str, tuple[float, int] | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._samplings = {}

    async def _sampling(self, job_uid: str) -> tuple[float, int] | None:
        """``(temperature, seed)`` of a rollout sample (its ``spec.rollout``), else ``None``:
        a lone job samples greedily. Specs are immutable, so each job is read once."""
        cache = self._samplings
        if job_uid not in cache:
            job = await self.ledger.get_job(job_uid)
            rollout = (job.spec or {}).get("rollout") if job is not None else None
            cache[job_uid] = (
                (float(rollout.get("temperature", 1.0)), int(rollout.get("seed", 0)))
                if isinstance(rollout, dict)
                else None
            )
            if len(cache) > 10_000:
                cache.pop(next(iter(cache)))
        return cache[job_uid]

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
        if pool.return_token_ids:
            extra["return_token_ids"] = True
            extra["logprobs"] = True
        temperature = 0.0
        sampling = await self._sampling(inp.job_uid)
        if sampling is not None:
            temperature = sampling[0]
            extra["seed"] = _call_seed(sampling[1], inp.agent_id, inp.step)
        request = ChatRequest(
            model=model,
            messages=prompt_messages(history),
            tools=specs or None,
            tool_choice="none" if inp.final_turn else ("auto" if specs else None),
            max_tokens=None,
            temperature=temperature,
            extra_body=extra,
            prefix_key=f"{inp.job_uid}/{inp.agent_id}",
            replica_hint=last_replica(history),
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


def _call_seed(sample_seed: int, agent_id: str, step: int) -> int:
    """One seed per model call of a sample: agents of one sample draw apart, and a retried
    call draws the same answer again."""
    digest = zlib.crc32(f"{sample_seed}/{agent_id}/{step}".encode())
    return digest & 0x7FFFFFFF
