"""``kswarm run``: one job on the embedded stack, with live progress and a report.

Exit codes: 0 the job succeeded, 1 it failed or was cancelled, 2 the input is invalid (the
message names the field; nothing is started and nothing is written to the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import tempfile
import uuid
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from temporalio.client import WorkflowHandle

from kswarm import looping
from kswarm.config import kswarm_home
from kswarm.embedded import EmbeddedStack, SimOptions, embedded_stack
from kswarm.errors import ConfigError, LedgerUnavailable, SpecError, ToolServerUnavailable
from kswarm.llm import engines
from kswarm.llm.pools import load_pools_file
from kswarm.rollouts import answer_keys, scorers
from kswarm.sim import demo_tools
from kswarm.spec import SwarmJobManifest, load_manifest_file, parse_manifest
from kswarm.tools import ToolRegistry
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig, load_tools_file
from kswarm.workflows import JobStatus, SwarmJobInput, SwarmWorkflow
from kswarm.workflows.report import build_report

__all__ = ["load_job", "run_job"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
SIMULATED_POOL_NOTE = (
    "note: the default pool is kswarm's simulator (a scripted model over a fictional corpus), "
    "not a real model; use --pools FILE for real model servers"
)


def load_job(
    path: str,
    *,
    mode: str | None,
    pools_file: str | None,
    tools: ToolRegistry | None = None,
    check_tools: bool = True,
) -> SwarmJobManifest:
    """Read and validate the job before anything starts; ``tools`` are the tools it may name
    (the demo world's by default), ``check_tools=False`` leaves the names for later (the tool
    servers of ``--tools`` are not listed yet)."""
    manifest = load_manifest_file(path)
    pools = ["default"]
    if pools_file:
        pools = list(load_pools_file(pools_file).names)
    known = (tools or demo_tools()).names() if check_tools else None
    job = parse_manifest(manifest, known_tools=known, known_pools=pools)
    spec = answer_keys.inline_answer_key(job.spec, base_dir=os.path.dirname(path) or ".")
    if spec.evaluation is not None and spec.evaluation.function:
        scorers.load_user_scorer(spec.evaluation.function)  # refuse a scorer that cannot load
    job = dataclasses.replace(job, spec=spec)
    if mode:
        job = SwarmJobManifest(
            name=job.name, namespace=job.namespace, uid=job.uid, spec=job.spec.with_mode(mode)
        )
    if not (manifest.get("metadata") or {}).get("uid"):
        # Each run is a new job: a fresh uid keeps its ledger rows apart from earlier runs.
        job = SwarmJobManifest(
            name=job.name, namespace=job.namespace, uid=uuid.uuid4().hex[:16], spec=job.spec
        )
    return job


def _progress(job: SwarmJobManifest, status: JobStatus | None, tools: int, tick: float) -> Table:
    t = Table(title=f"SwarmJob {job.name} ({job.spec.mode})", show_header=False, expand=False)
    s = status or JobStatus()
    t.add_row("phase", s.phase)
    t.add_row("stage", str(s.stage))
    t.add_row(
        "sub-agents",
        f"{s.subagents_running} running, {s.subagents_succeeded + s.subagents_failed} done "
        f"of {s.subagents_spawned} spawned ({s.subagents_failed} failed)",
    )
    t.add_row("tool calls", str(tools))
    t.add_row("critical steps", str(s.critical_steps))
    t.add_row("total steps", str(s.total_steps))
    t.add_row("elapsed", f"{tick:.1f} s")
    return t


async def _watch(
    stack: EmbeddedStack, job: SwarmJobManifest, handle: WorkflowHandle[Any, Any], console: Console
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with Live(_progress(job, None, 0, 0.0), console=console, refresh_per_second=4) as live:
        while True:
            with contextlib.suppress(Exception):
                status = await handle.query(SwarmWorkflow.status)
                counters = await stack.ledger.job_counters(job.uid)
                live.update(_progress(job, status, counters.tool_calls_total, loop.time() - start))
            await asyncio.sleep(0.5)


def _print_report(report: dict[str, Any], console: Console) -> None:
    t = Table(title=f"Report: {report['name']}", show_header=False)
    t.add_row(
        "phase", str(report["phase"]) + (f" ({report['reason']})" if report["reason"] else "")
    )
    t.add_row("critical steps", str(report["criticalSteps"]))
    t.add_row("total steps", str(report["totalSteps"]))
    t.add_row("speedup (total / critical)", f"{report['speedup']:.2f}x")
    sub = report["subagents"]
    t.add_row(
        "sub-agents", f"{sub['spawned']} spawned, {sub['succeeded']} ok, {sub['failed']} failed"
    )
    tc = report["toolCalls"]
    t.add_row(
        "tool calls", f"{tc['total']} ({tc['failed']} failed, {tc['deduplicated']} deduplicated)"
    )
    t.add_row("model calls", str(report["llmCalls"]))
    t.add_row("tokens", f"{report['tokens']['input']} in, {report['tokens']['output']} out")
    t.add_row("wall time", f"{report['wallSeconds']:.2f} s")
    context = report.get("context") or {}
    if context.get("masked") or context.get("dropped"):
        t.add_row(
            "context management",
            f"{context['masked']} tool results masked, {context['dropped']} messages dropped",
        )
    if report["modelSeconds"]:
        t.add_row("model time on the critical path", f"{report['modelSeconds']:.2f} s")
    if report["quality"] is not None:
        t.add_row("quality (item F1)", f"{report['quality']:.3f}")
    console.print(t)
    stages = Table(title="Stages", show_lines=False)
    for col in ("stage", "main steps", "max sub-agent steps", "sub-agents"):
        stages.add_column(col, justify="right")
    shown = report["stages"] if len(report["stages"]) <= 12 else report["stages"][:10]
    for s in shown:
        stages.add_row(
            *(str(s[k]) for k in ("stage", "mainSteps", "maxSubagentSteps", "subagents"))
        )
    if len(shown) < len(report["stages"]):
        stages.add_row("...", f"{len(report['stages']) - len(shown)} more", "", "")
    console.print(stages)
    preview = str(report["result"])
    console.print(f"[bold]Result[/bold] {preview[:400]}{'...' if len(preview) > 400 else ''}")


async def _run_with_tools(
    path: str,
    job: SwarmJobManifest,
    *,
    servers: list[ToolServerConfig],
    as_json: bool,
    pools_file: str | None,
    sim: SimOptions,
) -> int:
    """Start the tool servers of ``--tools``, check the job's tool names against what they
    list, run the job, stop the servers."""
    err = Console(stderr=True)
    log_path = kswarm_home() / "tool-servers.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as errlog:
        try:
            async with tool_servers(servers, errlog=errlog) as connected:
                tools = connected.register(demo_tools())
                try:  # the job was checked but for its tool names: check them now
                    load_job(path, mode=None, pools_file=pools_file, tools=tools)
                except SpecError as e:
                    err.print(f"[red]error:[/red] {e}", highlight=False)
                    return EXIT_INVALID
                return await _run(
                    job,
                    as_json=as_json,
                    pools_file=pools_file,
                    sim=sim,
                    tools=tools,
                )
        except ToolServerUnavailable as e:
            err.print(f"[red]error:[/red] {e} (its standard error: {log_path})", highlight=False)
            return EXIT_INVALID


async def _run(
    job: SwarmJobManifest,
    *,
    as_json: bool,
    pools_file: str | None,
    sim: SimOptions,
    tools: ToolRegistry | None = None,
) -> int:
    console = Console(stderr=as_json)
    if pools_file is None:
        console.print(SIMULATED_POOL_NOTE, style="yellow", highlight=False)
    async with embedded_stack(pools_file=pools_file, sim=sim, tools=tools) as stack:
        inp = SwarmJobInput(name=job.name, namespace=job.namespace, uid=job.uid, spec=job.spec)
        handle = await stack.client.start_workflow(
            SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
        )
        watcher = None
        if not as_json and console.is_terminal:
            watcher = asyncio.create_task(_watch(stack, job, handle, console))
        try:
            result = await handle.result()
        finally:
            if watcher:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        await stack.ledger.flush()
        counters = await stack.ledger.job_counters(job.uid)
        report = build_report(result, counters)
    if as_json:
        print(json.dumps(report))
    else:
        _print_report(report, console)
    return EXIT_OK if report["phase"] == "Succeeded" else EXIT_FAILED


def run_job(
    path: str,
    *,
    as_json: bool = False,
    mode: str | None = None,
    time_scale: float | None = None,
    pools_file: str | None = None,
    replicas: int = 2,
    sim_extra: dict[str, Any] | None = None,
    tools_file: str | None = None,
    serve_model: str | None = None,
) -> int:
    if serve_model is not None:
        if pools_file:
            Console(stderr=True).print(
                "[red]error:[/red] --serve-model and --pools: give one of them", highlight=False
            )
            return EXIT_INVALID
        with tempfile.TemporaryDirectory() as tmp:
            return run_job(
                path,
                as_json=as_json,
                mode=mode,
                time_scale=time_scale,
                pools_file=engines.serve_model_pools(serve_model, tmp),
                replicas=replicas,
                sim_extra=sim_extra,
                tools_file=tools_file,
            )
    err = Console(stderr=True)
    servers: list[ToolServerConfig] = []
    try:
        if pools_file:  # an engine that is not installed: say so before anything starts
            engines.check_engines(engines.engine_pools(load_pools_file(pools_file)))
        if tools_file:
            servers = load_tools_file(tools_file)
        job = load_job(path, mode=mode, pools_file=pools_file, check_tools=not tools_file)
        if time_scale is not None and not 0 < time_scale <= 100:
            raise SpecError(
                "--time-scale", f"must be between 0 (exclusive) and 100, got {time_scale}"
            )
    except (SpecError, ConfigError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        return EXIT_INVALID
    sim = SimOptions(replicas=replicas, time_scale=time_scale or 1.0, extra=sim_extra or {})
    try:
        if tools_file:
            return looping.run(
                _run_with_tools(
                    path,
                    job,
                    servers=servers,
                    as_json=as_json,
                    pools_file=pools_file,
                    sim=sim,
                )
            )
        return looping.run(_run(job, as_json=as_json, pools_file=pools_file, sim=sim))
    except (LedgerUnavailable, ConfigError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        return EXIT_INVALID
    except KeyboardInterrupt:
        err.print("cancelled")
        return EXIT_FAILED
