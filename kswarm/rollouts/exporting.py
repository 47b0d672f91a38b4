"""``kswarm export JOB|GROUP --format atif``: trajectories for trainers, one JSON per line.

``JOB`` is a job's uid, name or ``namespace/name``; ``GROUP`` is a rollout group's uid (the
``uid`` that ``kswarm rollout --json`` prints) or its name, and exports every sample in order.
"""

from __future__ import annotations

import json
from typing import IO

from kswarm.errors import KswarmError
from kswarm.ledger import models
from kswarm.ledger.commands import Exporter
from kswarm.ledger.repository import Ledger
from kswarm.rollouts.trajectories import ToolSpecs, job_trajectory

__all__ = ["atif_exporter", "resolve_jobs"]


async def resolve_jobs(ledger: Ledger, ref: str) -> list[models.Job]:
    """The jobs ``ref`` names: one job, or every sample of a rollout group."""
    group = await ledger.list_group_jobs(ref)
    if group:
        return group
    job = await ledger.find_job(ref)
    if job is not None:
        return [job]
    first = await ledger.find_job(f"{ref}-s0")  # a group by name: its newest run
    if first is not None and first.uid.endswith("-s0"):
        return await ledger.list_group_jobs(first.uid[: -len("-s0")])
    raise KswarmError(f"no job or rollout group {ref!r} in ledger {ledger.masked_url}")


def atif_exporter(tool_specs: ToolSpecs | None = None) -> Exporter:
    """The ``atif`` format for :func:`kswarm.ledger.commands.register`."""

    async def export(ledger: Ledger, ref: str, out: IO[str]) -> int:
        jobs = await resolve_jobs(ledger, ref)
        for job in jobs:
            trajectory = await job_trajectory(ledger, job.uid, tool_specs=tool_specs)
            out.write(json.dumps(trajectory.to_json_dict(), ensure_ascii=False) + "\n")
        return len(jobs)

    return export
