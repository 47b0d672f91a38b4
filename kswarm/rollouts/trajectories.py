"""A job's trajectories in ATIF v1.8 (the Agent Trajectory Interchange Format of Harbor).

One :class:`atif.Trajectory` per job: the orchestrator's (or the single agent's) steps, with each
sub-agent's own trajectory embedded in ``subagent_trajectories`` and referenced from the
observation of the spawn call that started it. Tool definitions are the OpenAI-style specs of
the tools each agent had; per-step metrics are the model call's tokens; the job's outcome,
critical steps, serial-collapse measures and reward terms are in ``final_metrics.extra``.
Every document is validated by the ``atif`` package's models as it is built.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import atif

import kswarm
from kswarm.ledger import models
from kswarm.ledger.repository import Ledger
from kswarm.tools import control as ctl

__all__ = ["SCHEMA_VERSION", "ToolSpecs", "job_trajectory"]

SCHEMA_VERSION = "ATIF-v1.8"
ToolSpecs = Callable[[Iterable[str]], list[dict[str, Any]]]
"""Tool names to their OpenAI-style definitions (unknown names are left out)."""

_SPAWNING = {ctl.SPAWN_SUBAGENTS, ctl.CREATE_SUBAGENT}


def _definitions(names: Sequence[str], specs: ToolSpecs | None) -> list[dict[str, Any]]:
    known = {d["function"]["name"]: d for d in (specs(names) if specs else [])}
    known.update(
        {d["function"]["name"]: d for d in ctl.control_specs() if d["function"]["name"] in names}
    )
    return [known.get(n) or {"type": "function", "function": {"name": n}} for n in names]


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_value": parsed}


def _content(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _children_per_call(
    calls: Sequence[Mapping[str, Any]], children: Sequence[str]
) -> dict[str, list[str]]:
    """The sub-agents each spawning call of one step started, in the order they were made."""
    out: dict[str, list[str]] = {}
    queue = list(children)
    spawning = [c for c in calls if c["function"]["name"] in _SPAWNING]
    for i, call in enumerate(spawning):
        args = _arguments(call["function"].get("arguments"))
        n = len(args.get("tasks") or []) if call["function"]["name"] == ctl.SPAWN_SUBAGENTS else 1
        taken = queue if i == len(spawning) - 1 else queue[:n]
        out[str(call.get("id"))] = list(taken)
        queue = queue[len(taken) :]
    return out


def _steps(
    messages: Sequence[Mapping[str, Any]],
    calls_by_step: Mapping[int, models.ModelCall],
    children_by_stage: Mapping[int, list[str]],
) -> list[atif.Step]:
    steps: list[atif.Step] = []
    pending: dict[str, Any] | None = None
    agent_step = 0

    def close() -> None:
        nonlocal pending
        if pending is not None:
            steps.append(atif.Step.model_validate(_clean(pending)))
            pending = None

    for m in messages:
        role = m.get("role")
        if role == "tool" and pending is not None:
            call_id = str(m.get("tool_call_id") or "")
            known = {tc["tool_call_id"] for tc in pending.get("tool_calls") or []}
            result: dict[str, Any] = {
                "source_call_id": call_id if call_id in known else None,
                "content": _content(m.get("content")),
            }
            refs = pending["_spawned"].get(call_id)
            if refs:
                result["subagent_trajectory_ref"] = [{"trajectory_id": r} for r in refs]
            pending.setdefault("observation", {"results": []})["results"].append(result)
            continue
        close()
        if role == "assistant":
            agent_step += 1
            mc = calls_by_step.get(agent_step)
            raw_calls = list(m.get("tool_calls") or [])
            step: dict[str, Any] = {
                "step_id": len(steps) + 1,
                "source": "agent",
                "message": _content(m.get("content") or ""),
                "_spawned": _children_per_call(raw_calls, children_by_stage.get(agent_step, [])),
            }
            if m.get("reasoning_content"):
                step["reasoning_content"] = str(m["reasoning_content"])
            if raw_calls:
                step["tool_calls"] = [
                    {
                        "tool_call_id": str(c.get("id")),
                        "function_name": c["function"]["name"],
                        "arguments": _arguments(c["function"].get("arguments")),
                    }
                    for c in raw_calls
                ]
            if mc is not None:
                step["model_name"] = mc.model
                step["metrics"] = {
                    "prompt_tokens": mc.input_tokens,
                    "completion_tokens": mc.output_tokens,
                    "cached_tokens": mc.cached_tokens,
                    "prompt_token_ids": mc.prompt_token_ids,
                    "completion_token_ids": mc.completion_token_ids,
                    "logprobs": mc.logprobs,
                }
            pending = step
        elif role in ("system", "user"):
            steps.append(
                atif.Step(step_id=len(steps) + 1, source=role, message=_content(m.get("content")))
            )
    close()
    return steps


def _clean(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if not k.startswith("_")}


async def job_trajectory(
    ledger: Ledger, job_uid: str, *, tool_specs: ToolSpecs | None = None
) -> atif.Trajectory:
    """The ATIF trajectory of job ``job_uid``, its sub-agents embedded."""
    await ledger.flush()
    job = await ledger.get_job(job_uid)
    if job is None:
        raise LookupError(f"no job {job_uid!r} in the ledger")
    agents = await ledger.list_agents(job_uid)
    calls: dict[str, dict[int, models.ModelCall]] = defaultdict(dict)
    for mc in sorted(await ledger.list_model_calls(job_uid), key=lambda c: c.attempt):
        if mc.status == "ok":
            calls[mc.agent_id][mc.step] = mc
    children: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for a in sorted(agents, key=lambda a: a.id):
        if a.parent_id is not None and a.stage is not None:
            children[a.parent_id][a.stage].append(a.id)
    spec = job.spec or {}
    job_tools = list(spec.get("tools") or [])
    sub_tools = list((spec.get("subagents") or {}).get("tools") or job_tools)

    async def trajectory(agent: models.Agent, *, root: bool) -> dict[str, Any]:
        messages = await ledger.get_messages(agent.id)
        steps = _steps(messages, calls[agent.id], children[agent.id])
        names = (
            [*ctl.CONTROL_TOOLS, *job_tools]
            if agent.role == "orchestrator"
            else (job_tools if agent.role == "single" else sub_tools)
        )
        agent_calls = calls[agent.id].values()
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "session_id": job.uid,
            "trajectory_id": agent.id,
            "agent": {
                "name": f"kswarm-{agent.role}",
                "version": kswarm.__version__,
                "model_name": next((c.model for c in agent_calls), None),
                "tool_definitions": _definitions(names, tool_specs),
                "extra": {"role": agent.role, "name": agent.name, "stage": agent.stage},
            },
            "steps": [s.model_dump(exclude_none=True) for s in steps],
            "final_metrics": {
                "total_prompt_tokens": sum(c.input_tokens for c in agent_calls),
                "total_completion_tokens": sum(c.output_tokens for c in agent_calls),
                "total_cached_tokens": sum(c.cached_tokens for c in agent_calls),
                "total_steps": len(steps),
                "extra": {"status": agent.status, "agentSteps": agent.steps},
            },
        }
        if root:
            report = dict(job.report or {})
            doc["final_metrics"]["extra"].update(
                {
                    "phase": job.phase,
                    "reason": job.reason,
                    "criticalSteps": job.critical_steps,
                    "totalSteps": job.total_steps,
                    "speedup": job.speedup,
                    "quality": job.quality,
                    "evaluation": report.get("evaluation"),
                    "collapse": report.get("collapse"),
                    "reward": (report.get("rollout") or {}).get("terms"),
                }
            )
            doc["extra"] = {
                "job": {"uid": job.uid, "namespace": job.namespace, "name": job.name},
                "task": spec.get("task"),
                "rollout": {k: v for k, v in (report.get("rollout") or {}).items() if k != "terms"}
                or None,
            }
            subs = [a for a in agents if a.parent_id is not None]
            if subs:
                doc["subagent_trajectories"] = [
                    await trajectory(a, root=False) for a in sorted(subs, key=lambda a: a.id)
                ]
        return doc

    root = next((a for a in agents if a.parent_id is None), None)
    if root is None:
        raise LookupError(f"job {job_uid!r} has no root agent in the ledger")
    return atif.Trajectory.model_validate(await trajectory(root, root=True))
