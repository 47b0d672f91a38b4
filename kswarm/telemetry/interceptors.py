"""Temporal interceptors that trace and count a swarm job at its workflow and activity edges.

Every step of a swarm crosses Temporal: the job is a ``SwarmWorkflow``, each sub-agent a
``SubagentWorkflow`` child, each model step a ``model_step`` activity on its pool's queue. So
the edges Temporal already draws are where the spans and metrics belong. Tool calls are the
exception: the short calls of a step share one local activity (``run_tools``), so each call's
``execute_tool {tool}`` span and its metrics are made where it runs (``workflows.tool_runs``).

========================  =====================================  =============================
edge                      span                                   metrics
========================  =====================================  =============================
SwarmWorkflow run         ``invoke_workflow`` >                  (jobs: at start/finish_job)
                          ``invoke_agent orchestrator|single``
SubagentWorkflow run      ``invoke_agent {name}``
model_step activity       ``chat {model}`` with token usage      tokens, in-flight per pool
start_job / finish_job    (none)                                 jobs started / by phase
========================  =====================================  =============================

Temporal's own OpenTelemetry interceptor (``temporalio.contrib.opentelemetry``) carries the
context in headers, from the client to the workflow, to children, to activities in any
process; :class:`SwarmTelemetryPlugin` puts it outermost and ours inside it, so our spans are
children of the propagated context and one job is one trace. Workflow-side spans come from
Temporal's replay-safe tracer provider: deterministic ids, and no export while replaying
history, so a replayed workflow makes no duplicate span.

Inputs are read by duck typing (``uid``/``spec``, ``agent_id``/``step``): telemetry sits below
the workflows package and must not import it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import temporalio.worker
from temporalio import activity
from temporalio.plugin import SimplePlugin
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from kswarm.converter import ConverterPlugin
from kswarm.telemetry import metrics, tracing

__all__ = ["SwarmTelemetryInterceptor", "SwarmTelemetryPlugin", "temporal_plugins"]

MAIN_ROLES = {"swarm": "orchestrator", "single": "single"}


class SwarmTelemetryInterceptor(temporalio.worker.Interceptor):
    """Spans (when ``traces``) and metrics (when ``metrics``) at the swarm's Temporal edges.

    ``pools`` (a :class:`kswarm.llm.pools.PoolRegistry`, or anything with ``get(name)``
    returning objects with ``model`` and ``replicas``) names the model and the provider of a
    model step whose input names only its pool.
    """

    def __init__(self, *, traces: bool, metrics: bool = True, pools: Any = None) -> None:
        self.traces = traces
        self.metrics = metrics
        self.pools = pools

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityTelemetry(next, self)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _WorkflowSpans if self.traces else None

    def model_of(self, pool: str, requested: str | None) -> tuple[str, str]:
        """``(model, provider)`` of a model step on ``pool``."""
        cfg = None
        if self.pools is not None:
            try:
                cfg = self.pools.get(pool)
            except Exception:  # an unknown pool fails in the activity, not here
                cfg = None
        model = requested or (getattr(cfg, "model", None) if cfg is not None else None) or pool
        replicas = tuple(getattr(cfg, "replicas", ()) or ()) if cfg is not None else ()
        return str(model), tracing.provider_for(replicas)


class _ActivityTelemetry(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: SwarmTelemetryInterceptor) -> None:
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        kind = activity.info().activity_type
        arg = input.args[0] if input.args else None
        if kind == "model_step" and arg is not None:
            return await self._model_step(input, arg)
        result = await self.next.execute_activity(input)
        if self._root.metrics:
            if kind == "start_job":
                metrics.record_job_started()
            elif kind == "finish_job":
                outcome = getattr(arg, "outcome", arg)  # FinishJobInput carries the result
                metrics.record_job_finished(str(getattr(outcome, "phase", "Unknown")))
        return result

    async def _model_step(self, input: ExecuteActivityInput, inp: Any) -> Any:
        pool = str(getattr(inp, "pool", ""))
        model, provider = self._root.model_of(pool, getattr(inp, "model", None))
        with tracing.chat_span(
            job_uid=str(inp.job_uid),
            agent_id=str(inp.agent_id),
            role=getattr(inp, "role", None),
            stage=getattr(inp, "stage", None),
            step=int(inp.step),
            model=model,
            pool=pool,
            provider=provider,
        ) as span:
            if self._root.metrics:
                with metrics.in_flight(pool):
                    result = await self.next.execute_activity(input)
            else:
                result = await self.next.execute_activity(input)
            tokens_in = int(getattr(result, "input_tokens", 0) or 0)
            tokens_out = int(getattr(result, "output_tokens", 0) or 0)
            tracing.set_usage(span, tokens_in, tokens_out)
        if self._root.metrics:
            metrics.record_tokens(pool, tokens_in, tokens_out)
        return result


class _WorkflowSpans(WorkflowInboundInterceptor):
    """``invoke_workflow`` and ``invoke_agent`` spans around a workflow's run (in the sandbox)."""

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        arg = input.args[0] if input.args else None
        if arg is not None and hasattr(arg, "uid") and hasattr(arg, "spec"):
            mode = str(getattr(arg.spec, "mode", "swarm"))
            role = MAIN_ROLES.get(mode, mode)
            with (
                tracing.job_span(
                    job_uid=str(arg.uid),
                    name=str(getattr(arg, "name", "")),
                    namespace=str(getattr(arg, "namespace", "")),
                    mode=mode,
                ),
                tracing.agent_span(
                    job_uid=str(arg.uid),
                    agent_id=f"{arg.uid}/{role}",
                    name=role,
                    role=role,
                    stage=None,
                ),
            ):
                return await super().execute_workflow(input)
        if arg is not None and hasattr(arg, "agent_id") and hasattr(arg, "job_uid"):
            agent_id = str(arg.agent_id)
            name = str(getattr(arg, "name", "") or agent_id.rsplit("/", 1)[-1])
            with tracing.agent_span(
                job_uid=str(arg.job_uid),
                agent_id=agent_id,
                name=name,
                role="subagent",
                stage=getattr(arg, "stage", None),
            ):
                return await super().execute_workflow(input)
        return await super().execute_workflow(input)


def _pass_opentelemetry(runner: WorkflowRunner | None) -> WorkflowRunner:
    """The worker's runner, with OpenTelemetry passed through the sandbox (one global provider)."""
    if runner is None:
        raise ValueError("kswarm telemetry: the worker has no workflow runner")
    if isinstance(runner, SandboxedWorkflowRunner):
        return dataclasses.replace(
            runner,
            restrictions=runner.restrictions.with_passthrough_modules("opentelemetry"),
        )
    return runner


class SwarmTelemetryPlugin(SimplePlugin):
    """Temporal plugin for ``Client.connect(plugins=[...])``: workers made with the client
    inherit it. With ``traces``, Temporal's OpenTelemetry interceptor (outermost: context
    propagation) and kswarm's spans; always kswarm's metrics unless ``metrics=False``."""

    def __init__(self, *, traces: bool, metrics: bool = True, pools: Any = None) -> None:
        interceptors: list[Any] = []
        if traces:
            from temporalio.contrib.opentelemetry import OpenTelemetryInterceptor

            interceptors.append(OpenTelemetryInterceptor(add_temporal_spans=False))
        interceptors.append(SwarmTelemetryInterceptor(traces=traces, metrics=metrics, pools=pools))
        super().__init__(
            "kswarm.telemetry",
            interceptors=interceptors,
            workflow_runner=_pass_opentelemetry if traces else None,
        )


def temporal_plugins(*, pools: Any = None, metrics: bool = True) -> list[SimplePlugin]:
    """The plugins a kswarm client connects with: the data converter
    (:mod:`kswarm.converter`), traces when :func:`tracing.configure_tracing` turned them on,
    metrics always (unless ``metrics=False``)."""
    return [
        ConverterPlugin(),
        SwarmTelemetryPlugin(traces=tracing.enabled(), metrics=metrics, pools=pools),
    ]
