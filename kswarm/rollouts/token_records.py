"""``kswarm export JOB|GROUP --format tokens``: token-level samples a trainer loads as they are.

One JSON line per agent conversation: ``prompt_token_ids`` (the first call's prompt), then
``response_token_ids``: every model call's generated tokens (``loss_mask`` 1, with their
``logprobs``) and, between two calls, the tokens the next prompt added after them (tool
results and template tokens: ``loss_mask`` 0, log-prob 0). Lines are grouped by task (the
rollout group, else the job) and carry the sample's reward terms and advantage, the layout
verl, SkyRL and slime read for multi-turn GRPO.

The ids come from the ledger, where a pool with ``returnTokenIds`` records them per model call.
When a server re-renders earlier turns (a call's prompt does not extend the previous prompt
and completion), the conversation is cut there and continues in a new line (``segment`` + 1),
so no line ever trains on tokens the model did not see.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO, Any

from kswarm.errors import KswarmError
from kswarm.ledger import models
from kswarm.ledger.commands import Exporter
from kswarm.ledger.repository import Ledger
from kswarm.rollouts.exporting import resolve_jobs

__all__ = ["agent_records", "tokens_exporter"]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def agent_records(calls: Sequence[models.ModelCall]) -> list[dict[str, Any]]:
    """The token segments of one agent's successful model calls, in step order."""
    segments: list[dict[str, Any]] = []
    context: list[int] = []
    current: dict[str, Any] | None = None
    for call in sorted(calls, key=lambda c: c.step):
        prompt = list(call.prompt_token_ids or [])
        generated = list(call.completion_token_ids or [])
        logprobs = list(call.logprobs or [0.0] * len(generated))
        if current is not None and _common_prefix(context, prompt) == len(context):
            added = prompt[len(context) :]
            current["response_token_ids"] += added
            current["loss_mask"] += [0] * len(added)
            current["logprobs"] += [0.0] * len(added)
        else:
            current = {
                "segment": len(segments),
                "first_step": call.step,
                "prompt_token_ids": prompt,
                "response_token_ids": [],
                "loss_mask": [],
                "logprobs": [],
            }
            segments.append(current)
        current["response_token_ids"] += generated
        current["loss_mask"] += [1] * len(generated)
        current["logprobs"] += logprobs[: len(generated)] + [0.0] * (len(generated) - len(logprobs))
        context = prompt + generated
    return segments


async def job_records(ledger: Ledger, job: models.Job) -> list[dict[str, Any]]:
    report = job.report or {}
    rollout = report.get("rollout") or {}
    terms = rollout.get("terms")
    calls: dict[str, list[models.ModelCall]] = {}
    for c in await ledger.list_model_calls(job.uid):
        if c.status == "ok" and c.completion_token_ids is not None:
            calls.setdefault(c.agent_id, []).append(c)
    if not calls:
        raise KswarmError(
            f"job {job.name} ({job.uid}) has no token ids in the ledger: its pools did not ask "
            "the servers for them (set returnTokenIds on the pool)"
        )
    roles = {a.id: a.role for a in await ledger.list_agents(job.uid)}
    out = []
    for agent_id in sorted(calls, key=lambda a: (roles.get(a) != "orchestrator", a)):
        for segment in agent_records(calls[agent_id]):
            out.append(
                {
                    "task_id": rollout.get("group") or job.uid,
                    "job_uid": job.uid,
                    "sample": rollout.get("sample", 0),
                    "agent_id": agent_id,
                    "role": roles.get(agent_id, ""),
                    **segment,
                    "reward": terms.get("reward") if terms else None,
                    "advantage": terms.get("advantage") if terms else None,
                    "reward_terms": terms,
                }
            )
    return out


def tokens_exporter() -> Exporter:
    """The ``tokens`` format for :func:`kswarm.ledger.commands.register`."""

    async def export(ledger: Ledger, ref: str, out: IO[str]) -> int:
        n = 0
        for job in await resolve_jobs(ledger, ref):
            for record in await job_records(ledger, job):
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                n += 1
        return n

    return export
