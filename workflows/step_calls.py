"""What each tool call of a model step is: a control (spawn, finish), a tool to run, or refused.

The orchestrator's controls (``spawn_subagents``, ``create_subagent`` + ``assign_task``,
``finish``) are carried out by the workflow, so here they become sub-agent records and spawn
references; a plain tool call is checked (known, allowed, arguments valid against its schema)
and left pending for the tool activity, with its side-effect flag and MCP server for the ledger;
anything else is refused with a reason the model sees.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from kswarm.errors import ToolError
from kswarm.ledger import AgentRecord, Ledger
from kswarm.tools import ToolRegistry, allowed_by, validate_arguments
from kswarm.tools import control as ctl
from kswarm.workflows.inputs import ModelStepInput, SpawnRef
from kswarm.workflows.resources import agent_id_for

__all__ = ["classify_calls"]


async def classify_calls(
    ledger: Ledger,
    tools: ToolRegistry,
    inp: ModelStepInput,
    assistant: dict[str, Any],
    *,
    require_approval: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[SpawnRef], bool]:
    """Decide what each tool call of a step is; create the sub-agents it spawns.

    A plain call waits for a person's decision (``approval``) when its tool is marked
    ``requireApproval`` (by its ToolServer or tools-file entry) or is on the job's own
    ``require_approval`` list (exact names or ``SERVER__*``)."""
    calls = assistant.get("tool_calls") or []
    rows: list[dict[str, Any]] = []
    spawns: list[SpawnRef] = []
    new_agents: list[AgentRecord] = []
    first_messages: dict[str, list[dict[str, Any]]] = {}
    templates: dict[str, str] = {}
    final = not calls

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
                row.update(status="succeeded", result={"created": args.get("name")}, kind="done")
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
                    tpl = await ledger.get_agent(agent_id_for(inp.job_uid, f"tpl-{agent}"))
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
        if name == ctl.ANSWER and inp.role != "orchestrator":
            if not isinstance(args, dict) or not isinstance(args.get("answer"), str):
                row.update(status="refused", error="answer: arguments must be {answer: string}")
            else:
                row.update(status="succeeded", result={"answered": True}, kind="finish")
                final = True
            continue
        if name not in tools.tools:
            known = (
                ", ".join(sorted(set(tools.expand(inp.tools)) - set(ctl.CONTROL_TOOLS))) or "none"
            )
            row.update(status="refused", error=f"unknown tool {name!r}; your tools: {known}")
            continue
        tool = tools.get(name)
        row["side_effects"], row["server"] = tool.side_effects, tool.server
        if not allowed_by(inp.tools, name):
            row.update(status="refused", error=f"tool {name!r} is not in the job's allow-list")
            continue
        try:
            validate_arguments(tool, args)
        except ToolError as e:
            row.update(status="refused", error=str(e))
            continue
        row["budgeted"] = True
        row["local"] = tool.local
        row["approval"] = tool.require_approval or allowed_by(require_approval, name)
    if inp.final_turn:
        final = True
    if new_agents:
        await ledger.upsert_agents(new_agents)
        await asyncio.gather(
            *(
                ledger.append_messages(inp.job_uid, agent_id, 0, msgs)
                for agent_id, msgs in first_messages.items()
            )
        )
    return rows, spawns, final
