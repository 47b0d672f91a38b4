"""``kswarm rollout``: one job sampled N times on the embedded stack, scored as a group.

The group runs as one :class:`~kswarm.workflows.RolloutWorkflow`; a progress bar per sample
follows each sample's critical steps until it ends, then the group's reward terms are printed
(or, with ``--json``, the :class:`~kswarm.workflows.RolloutResult` as one JSON object).
Exit codes as ``kswarm run``: 0 every sample succeeded, 1 one did not, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from kswarm import looping
from kswarm.embedded import SimOptions, embedded_stack
from kswarm.errors import ConfigError, LedgerUnavailable, SpecError
from kswarm.llm import engines
from kswarm.llm.pools import load_pools_file
from kswarm.rollouts import LambdaSchedule
from kswarm.running import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_job
from kswarm.spec import RolloutSpec
from kswarm.workflows import RolloutInput, RolloutResult, RolloutWorkflow, SwarmWorkflow

__all__ = ["run_rollout"]

MAX_SAMPLES = 256
DEFAULT_SAMPLES = 8


def _check(samples: int, epoch: int, epochs: int, lam: LambdaSchedule | None) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise SpecError("--samples", f"must be between 1 and {MAX_SAMPLES}, got {samples}")
    if epochs < 1:
        raise SpecError("--epochs", f"must be at least 1, got {epochs}")
    if not 0 <= epoch < epochs:
        raise SpecError("--epoch", f"must be between 0 and {epochs - 1}, got {epoch}")


async def _follow(stack: Any, inp: RolloutInput, progress: Progress) -> None:
    """One bar per sample: critical steps so far, and its phase once it ends."""
    bars = [
        progress.add_task(f"sample {i}", total=None, phase="Pending") for i in range(inp.samples)
    ]
    while True:
        for i, bar in enumerate(bars):
            with contextlib.suppress(Exception):
                handle = stack.client.get_workflow_handle(inp.sample(i).workflow_id)
                status = await handle.query(SwarmWorkflow.status)
                done = status.phase in ("Succeeded", "Failed", "Cancelled")
                progress.update(
                    bar,
                    completed=status.critical_steps,
                    total=status.critical_steps if done else None,
                    phase=status.phase,
                )
        await asyncio.sleep(0.5)


def _table(result: RolloutResult) -> Table:
    t = Table(title=f"Rollout {result.name}: epoch {result.epoch} of {result.epochs}")
    cols = ("sample", "phase", "critical steps", "λ_aux", "r_parallel", "r_finish", "success")
    for col in (*cols, "Q", "R", "advantage", "collapse"):
        t.add_column(col, justify="right")
    for s in result.samples:
        m = s.terms
        t.add_row(
            str(s.index),
            s.phase,
            str(s.critical_steps),
            f"{m['lambda_aux']:.3f}",
            f"{m['r_parallel']:.3f}",
            f"{m['r_finish']:.3f}",
            "yes" if m["success"] else "no",
            f"{m['quality']:.3f}",
            f"{m['reward']:.3f}",
            f"{m['advantage']:+.3f}",
            "serial" if s.serial_collapse else "",
        )
    t.caption = f"mean R = {result.mean_reward:.4f}"
    return t


async def _run(inp: RolloutInput, *, as_json: bool, pools_file: str | None, sim: SimOptions) -> int:
    console = Console(stderr=as_json)
    async with embedded_stack(pools_file=pools_file, sim=sim) as stack:
        handle = await stack.client.start_workflow(
            RolloutWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} critical steps"),
            TextColumn("{task.fields[phase]}"),
            console=console,
            disable=as_json or not console.is_terminal,
        )
        with progress:
            follower = asyncio.create_task(_follow(stack, inp, progress))
            try:
                result = await handle.result()
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
    if as_json:
        print(json.dumps(dataclasses.asdict(result)))
    else:
        console.print(_table(result))
    ok = all(s.phase == "Succeeded" for s in result.samples)
    return EXIT_OK if ok else EXIT_FAILED


def run_rollout(
    path: str,
    *,
    samples: int | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    lambda_start: float | None = None,
    lambda_end: float | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    as_json: bool = False,
    time_scale: float | None = None,
    pools_file: str | None = None,
    replicas: int = 2,
) -> int:
    """Sample the job at ``path``; a flag left ``None`` takes ``spec.rollout``'s value, else
    the default (8 samples, epoch 0 of 1, λ_aux from 0.1 to 0.0)."""
    err = Console(stderr=True)
    try:
        job = load_job(path, mode=None, pools_file=pools_file)
        if pools_file:  # an engine that is not installed: say so before anything starts
            engines.check_engines(engines.engine_pools(load_pools_file(pools_file)))
        group = job.spec.rollout or RolloutSpec(samples=DEFAULT_SAMPLES)
        samples = group.samples if samples is None else samples
        epoch = group.epoch if epoch is None else epoch
        epochs = group.epochs if epochs is None else epochs
        lambda_start = group.lambda_start if lambda_start is None else lambda_start
        lambda_end = group.lambda_end if lambda_end is None else lambda_end
        temperature = group.temperature if temperature is None else temperature
        seed = group.seed if seed is None else seed
        if not 0 <= temperature <= 2:
            raise SpecError("--temperature", f"must be between 0 and 2, got {temperature}")
        if seed < 0:
            raise SpecError("--seed", f"must be 0 or more, got {seed}")
        try:
            schedule = LambdaSchedule(start=lambda_start, end=lambda_end)
        except ValueError as e:
            raise SpecError("--lambda-start/--lambda-end", str(e)) from e
        _check(samples, epoch, epochs, schedule)
        if job.spec.evaluation is None:
            raise SpecError("spec.evaluation", "a rollout needs a scorer to compute Q(τ)")
    except (SpecError, ConfigError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        return EXIT_INVALID
    inp = RolloutInput(
        name=job.name,
        namespace=job.namespace,
        uid=job.uid,
        spec=job.spec,
        samples=samples,
        epoch=epoch,
        epochs=epochs,
        lambda_start=schedule.start,
        lambda_end=schedule.end,
        temperature=temperature,
        seed=seed,
    )
    sim = SimOptions(replicas=replicas, time_scale=time_scale or 1.0)
    try:
        return looping.run(_run(inp, as_json=as_json, pools_file=pools_file, sim=sim))
    except (LedgerUnavailable, ConfigError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        return EXIT_INVALID
    except KeyboardInterrupt:
        err.print("cancelled")
        return EXIT_FAILED
