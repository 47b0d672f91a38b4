"""Scripted model behaviour for the simulator: how a seeded "model" acts on the examples' tasks.

The simulator asks :func:`scripted_behaviour` for the assistant message of each request. The
script reads only what a real model would see (the messages and the offered tools) and is a
pure function of them and the seeded rng, so retries and replays get the same answer:

* an **orchestrator** (offered ``spawn_subagents``) splits a research task: one sub-agent per
  item of a wide task, all at once (profile ``swarm``) or one per step (profile ``serial``,
  the "serial collapse" of a weak orchestrator); a chain task is followed one hop per stage.
  It finishes with the rows its sub-agents reported.
* a **worker** (a sub-agent, or the single agent) researches its companies one after another:
  ``SEARCH_STEPS`` steps of ``CALLS_PER_STEP`` parallel searches each, then writes a note of what
  the results actually say; its answer is built from those notes, so quality is honest.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from kswarm.sim.corpus import ATTRIBUTES
from kswarm.sim.tasks import ResearchTask, answer_rows, parse_task, subtask_text

__all__ = [
    "CALLS_PER_STEP",
    "SEARCH_STEPS",
    "UNKNOWN_TASK",
    "extract_facts",
    "scripted_behaviour",
]

SEARCH_STEPS = 3
CALLS_PER_STEP = 5
_NOTE = "NOTE "
_DROPPED = "earlier messages of this task were dropped"
"""What the platform's note says where it dropped old steps of a long conversation."""
_SEARCHING = re.compile(r"Searching for (.+), step (\d+)\.")
_KEYWORDS = {
    "founded": "founded history",
    "headquarters": "headquartered offices",
    "ceo": "chief executive leadership",
    "employees": "employs people",
    "parent": "subsidiary parent ownership",
}
_PATTERNS = {
    "founded": r"{n} was founded in (\d{{4}})",
    "headquarters": r"{n} is headquartered in ([A-Z][a-z]+)",
    "ceo": r"chief executive of {n} is ([A-Z][a-z]+ [A-Z][a-z]+)",
    "employees": r"{n} employs (\d+) people",
    "parent": r"{n} (?:is a subsidiary of ([A-Z][a-z]+ [A-Z][a-z]+)|has no parent company)",
}


def _thought(rng: random.Random, text: str) -> str:
    filler = " ".join(
        rng.choice(("check", "source", "compare", "verify", "plan"))
        for _ in range(rng.randint(20, 60))
    )
    return f"{text} ({filler})"


def _call(name: str, args: dict[str, Any], rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "id": f"call_{rng.getrandbits(40):010x}_{i}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


def _tool_names(body: dict[str, Any]) -> set[str]:
    return {str((t.get("function") or {}).get("name")) for t in body.get("tools") or []}


def _task_text(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")


def extract_facts(entity: str, texts: list[str], attributes: tuple[str, ...]) -> dict[str, str]:
    """What the given texts say about ``entity``: the facts a careful reader would copy."""
    facts: dict[str, str] = {}
    n = re.escape(entity)
    for a in attributes:
        pat = re.compile(_PATTERNS[a].format(n=n))
        for t in texts:
            m = pat.search(t)
            if m:
                facts[a] = m.group(1) if m.group(1) else "none"
                break
    return facts


# --------------------------------------------------------------------------- orchestrator


def _spawn_results(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out = []
    for m in messages:
        if m.get("role") != "tool":
            continue
        try:
            data = json.loads(str(m.get("content") or ""))
        except ValueError:
            continue
        if isinstance(data, list) and all(isinstance(d, dict) and "agent" in d for d in data):
            out.append(data)
    return out


def _rows(results: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in results:
        for child in batch:
            rows.extend(r for r in answer_rows(str(child.get("answer") or "")) if r.get("entity"))
    return rows


def _finish(rows: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    answer = json.dumps(rows, separators=(",", ":"))
    return {
        "role": "assistant",
        "content": _thought(rng, f"All sub-agents reported; {len(rows)} rows."),
        "tool_calls": [_call("finish", {"answer": answer}, rng, 0)],
    }


def _spawn(tasks: list[tuple[str, str]], rng: random.Random) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": _thought(rng, f"Splitting the work into {len(tasks)} independent sub-tasks."),
        "tool_calls": [
            _call(
                "spawn_subagents",
                {"tasks": [{"name": n, "task": t} for n, t in tasks]},
                rng,
                0,
            )
        ],
    }


def _orchestrate(
    body: dict[str, Any], task: ResearchTask | None, rng: random.Random
) -> dict[str, Any]:
    messages = body.get("messages") or []
    results = _spawn_results(messages)
    rows = _rows(results)
    if task is None:
        return _finish([], rng)
    profile = str(body.get("kswarm_profile") or "swarm")
    if task.chain_start:
        current = task.chain_start
        if rows:
            parent = str(rows[-1].get("parent") or "none")
            if parent.lower() == "none" or any(r.get("entity") == parent for r in rows):
                return _finish(rows, rng)
            current = parent
        attrs = tuple(dict.fromkeys(("parent", *task.attributes)))
        return _spawn([(f"hop-{len(rows)}", subtask_text(current, attrs))], rng)
    done = {str(r.get("entity")) for r in rows}
    todo = [i for i in task.items if i not in done]
    if not todo or (results and profile == "swarm"):
        return _finish(rows, rng)
    batch = todo[:1] if profile == "serial" else todo
    return _spawn(
        [(f"research-{task.items.index(i)}", subtask_text(i, task.attributes)) for i in batch], rng
    )


# --------------------------------------------------------------------------- workers


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("role") == "assistant"]


def _notes(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    notes = []
    for m in _turns(messages):
        for line in str(m.get("content") or "").splitlines():
            if line.startswith(_NOTE):
                try:
                    notes.append(json.loads(line[len(_NOTE) :]))
                except ValueError:
                    pass
    return notes


def _recent_results(messages: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for m in messages:
        if m.get("role") == "tool":
            try:
                data = json.loads(str(m.get("content") or ""))
            except ValueError:
                continue
            if isinstance(data, dict):
                texts.extend(str(r.get("text", "")) for r in data.get("results", []))
    return texts


def _progress(messages: list[dict[str, Any]], task: ResearchTask) -> int:
    """How many turns the worker has taken: the turns it sees, or, once the platform dropped
    old steps to save context (a note says so), what its latest visible thought says it was
    doing, as a model reading its own recent reasoning would. Notes in dropped steps are lost
    with them, and so are their rows in the answer."""
    turns = _turns(messages)
    dropped = any(
        m.get("role") == "user" and _DROPPED in str(m.get("content") or "") for m in messages
    )
    if not dropped or not task.items:
        return len(turns)
    for turn in reversed(turns):
        m = _SEARCHING.search(str(turn.get("content") or ""))
        if m and m.group(1) in task.items:
            return task.items.index(m.group(1)) * SEARCH_STEPS + int(m.group(2))
    return len(turns)


def _work(body: dict[str, Any], task: ResearchTask | None, rng: random.Random) -> dict[str, Any]:
    messages = body.get("messages") or []
    if task is None:
        return {"role": "assistant", "content": _thought(rng, "Done."), "tool_calls": []}
    turns = _progress(messages, task)
    attrs = task.attributes
    if task.chain_start:
        attrs = tuple(dict.fromkeys(("parent", *attrs)))
    notes = _notes(messages)
    content = ""
    entity_index, sub = divmod(turns, SEARCH_STEPS)
    if sub == 0 and entity_index > 0 and len(notes) < entity_index:
        prev = _entity(task, entity_index - 1, notes)
        if prev is not None:
            note = {"entity": prev, **extract_facts(prev, _recent_results(messages), attrs)}
            notes.append(note)
            content = _NOTE + json.dumps(note, separators=(",", ":"))
    entity = _entity(task, entity_index, notes)
    tool_offered = "search" in _tool_names(body) and body.get("tool_choice") != "none"
    if entity is None or not tool_offered:
        rows = [{a: n.get(a, "") for a in ("entity", *attrs)} for n in notes]
        answer = json.dumps(rows[0] if task.subject and rows else rows, separators=(",", ":"))
        return {"role": "assistant", "content": f"{content}\n{answer}".strip(), "tool_calls": []}
    calls = []
    for i in range(CALLS_PER_STEP):
        a = attrs[(sub * CALLS_PER_STEP + i) % len(attrs)]
        calls.append(_call("search", {"query": f"{entity} {_KEYWORDS[a]}", "k": 3}, rng, i))
    if "write_note" in _tool_names(body):
        note = {"text": f"searched {entity}, step {sub + 1}"}
        calls.append(_call("write_note", note, rng, len(calls)))
    thought = _thought(rng, f"Searching for {entity}, step {sub + 1}.")
    return {"role": "assistant", "content": f"{content}\n{thought}".strip(), "tool_calls": calls}


def _entity(task: ResearchTask, index: int, notes: list[dict[str, Any]]) -> str | None:
    """The company a worker researches at ``index``, or None when it is done."""
    if task.subject:
        return task.subject if index == 0 else None
    if task.items:
        return task.items[index] if index < len(task.items) else None
    if index == 0:
        return task.chain_start
    if index - 1 < len(notes):
        parent = str(notes[index - 1].get("parent") or "none")
        seen = {n.get("entity") for n in notes}
        return None if parent.lower() == "none" or parent in seen else parent
    return None


UNKNOWN_TASK = (
    "the simulated model does not know this task; point the job at a real model pool (--pools) "
    "or use --behaviour"
)
"""What the scripted model says of a task that is not one of the demo world's research tasks."""


def _unknown_task(rng: random.Random) -> dict[str, Any]:
    """How a model that cannot help answers: a plain answer and OpenAI's ``refusal``."""
    return {
        "role": "assistant",
        "content": "I cannot help with this task: I only know the demo world's research tasks.",
        "refusal": UNKNOWN_TASK,
        "tool_calls": [],
    }


def scripted_behaviour(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The assistant message a seeded scripted model answers ``body`` with."""
    messages = body.get("messages") or []
    task = parse_task(_task_text(messages))
    if task is None:
        return _unknown_task(rng)
    if "spawn_subagents" in _tool_names(body):
        return _orchestrate(body, task, rng)
    return _work(body, task, rng)


assert set(_KEYWORDS) == set(ATTRIBUTES) == set(_PATTERNS)
