"""The orchestrator's control tools and the built-in prompts of each agent role.

``spawn_subagents`` starts many sub-agents in one call; ``create_subagent`` + ``assign_task``
define a reusable sub-agent and hand it tasks; ``finish`` ends the job with the answer. The
workflow, not a tool function, carries them out, so they are specs only.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANSWER",
    "ASSIGN_TASK",
    "CONTROL_TOOLS",
    "CREATE_SUBAGENT",
    "FINISH",
    "SPAWN_SUBAGENTS",
    "STEERING_TOOLS",
    "answer_spec",
    "control_specs",
    "system_prompt",
]

SPAWN_SUBAGENTS = "spawn_subagents"
CREATE_SUBAGENT = "create_subagent"
ASSIGN_TASK = "assign_task"
FINISH = "finish"
CONTROL_TOOLS = (SPAWN_SUBAGENTS, CREATE_SUBAGENT, ASSIGN_TASK, FINISH)
ANSWER = "answer"
"""How a sub-agent (or the single agent) ends when its pool has ``toolChoice: required`` and
every step must be a tool call; with ``auto`` it ends by answering in text."""
STEERING_TOOLS = (*CONTROL_TOOLS, ANSWER)
"""Calls that steer agents rather than use a tool: reports leave them out of ``toolCalls``."""

_SPECS: dict[str, dict[str, Any]] = {
    SPAWN_SUBAGENTS: {
        "description": (
            "Start sub-agents that work in parallel, one per task, each with its own context "
            "and tools. Returns each sub-agent's final answer when all are done."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "tasks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "description": "Short agent name."},
                            "task": {"type": "string", "description": "What it must do."},
                        },
                        "required": ["task"],
                    },
                }
            },
            "required": ["tasks"],
        },
    },
    CREATE_SUBAGENT: {
        "description": "Define a sub-agent by name with its own instructions, for assign_task.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "system_prompt": {"type": "string"},
            },
            "required": ["name"],
        },
    },
    ASSIGN_TASK: {
        "description": (
            "Give a task to a sub-agent defined with create_subagent; several assign_task calls "
            "in one step run in parallel. Returns the sub-agent's final answer."
        ),
        "parameters": {
            "type": "object",
            "properties": {"agent": {"type": "string"}, "task": {"type": "string"}},
            "required": ["agent", "task"],
        },
    },
    FINISH: {
        "description": "End the job with the final answer.",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        },
    },
}


def answer_spec() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": ANSWER,
            "description": "End your work with the result of your task.",
            "parameters": {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
            },
        },
    }


def control_specs() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, **s}} for n, s in _SPECS.items()]


ORCHESTRATOR_PROMPT = (
    "You are the orchestrator of an agent swarm. Split the task into independent sub-tasks "
    "and start sub-agents to do them in parallel with spawn_subagents (or create_subagent and "
    "assign_task). Sub-agents see only the task you give them. When you have what you need, "
    "call finish with the complete answer."
)
SUBAGENT_PROMPT = (
    "You are a sub-agent of a swarm. Do the task you are given with the tools you have, "
    "calling several tools at once when they are independent. Answer with the result only."
)
SINGLE_PROMPT = (
    "You are an agent. Do the task with the tools you have, calling several tools at once "
    "when they are independent. When done, answer with the result only."
)


def system_prompt(role: str, extra: str = "") -> str:
    base = {"orchestrator": ORCHESTRATOR_PROMPT, "subagent": SUBAGENT_PROMPT}.get(
        role, SINGLE_PROMPT
    )
    return f"{extra.strip()}\n\n{base}" if extra.strip() else base
