"""The critical path of a swarm job, from its spans: in steps, and in seconds.

Why not the usual walk: trace viewers (Jaeger's critical path, for one) start at the root and
follow, at each level, the child that finished last. In a swarm that is wrong twice. Sibling
spans of one stage are parallel, so the one that finished last is merely the slowest, not the
one with the most dependent steps; and the orchestrator's next step is not a child of its
sub-agents at all, it is their *successor*. The dependency structure is known exactly:

    orchestrator step t  ->  every sub-agent of stage t, in parallel  ->  orchestrator step t+1
                             (and the orchestrator's own tool calls of step t, in parallel)

and inside one agent, step k (a model call, then its tool calls in parallel) precedes step k+1.
So the longest path is a sum over stages of ``main steps + the longest parallel branch``:

    criticalSteps = sum_t (S_main(t) + max_i S_sub,i(t))

which is the ledger's own accounting; weighting the same graph by seconds (a step costs its
model call plus its slowest tool call) gives the path in time, which may run through another
sub-agent than the path in steps. Spans are grouped by ``kswarm.agent.id``, ``kswarm.step`` and
``kswarm.stage``; a step's retried attempts are one node, and a step none of whose attempts
succeeded is not a step (the engine does not count it either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kswarm.telemetry import spans as attr
from kswarm.telemetry.spans import SpanRecord

__all__ = ["CriticalPath", "StageOnPath", "StepNode", "critical_path", "format_path"]

MAIN_ROLES = ("orchestrator", "single")


@dataclass(frozen=True, slots=True)
class StepNode:
    """One step of one agent: its model call (all attempts) and its tool calls."""

    agent_id: str
    step: int
    stage: int
    start: float
    end: float
    counted: bool
    """True when an attempt of the model call succeeded: the step counts."""
    tool_seconds: float = 0.0
    """The slowest of the step's tool calls (they run in parallel)."""

    @property
    def chat_seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class StageOnPath:
    stage: int
    main_steps: int
    subagents: int
    critical_agent: str | None
    """The sub-agent with the most steps (ties: the slower); ``None`` when the stage has none."""
    subagent_steps: int
    seconds: float
    """Main steps plus the critical branch, in seconds of work."""


@dataclass(frozen=True)
class CriticalPath:
    job_uid: str
    steps: int
    """Steps on the critical path: the ledger's ``criticalSteps``."""
    seconds: float
    """The longest path weighted by seconds of work (model calls and tools; no queueing)."""
    step_path_seconds: float
    """Seconds of work along the path in steps (``nodes``)."""
    total_steps: int
    wall_seconds: float
    """First span's start to last span's end."""
    stages: tuple[StageOnPath, ...] = ()
    nodes: tuple[StepNode, ...] = field(default=(), repr=False)
    """The steps on the path in steps, in order."""
    main_agent: str | None = None

    @property
    def speedup(self) -> float:
        return round(self.total_steps / self.steps, 3) if self.steps else 0.0

    def on_path(self) -> set[tuple[str, int]]:
        """``(agent id, step)`` of every node on the path, for marking a timeline."""
        return {(n.agent_id, n.step) for n in self.nodes}


@dataclass
class _Acc:
    start: float
    end: float
    ok: bool
    stage: int | None


def _merge(acc: dict[tuple[str, int], _Acc], key: tuple[str, int], r: SpanRecord, ok: bool) -> None:
    stage = r.get_int(attr.STAGE)
    a = acc.get(key)
    if a is None:
        acc[key] = _Acc(r.start, r.end, ok, stage)
        return
    a.start, a.end, a.ok = min(a.start, r.start), max(a.end, r.end), a.ok or ok
    if a.stage is None:
        a.stage = stage


def _main_agent(roles: dict[str, str], agents: Iterable[str]) -> str | None:
    for agent, role in roles.items():
        if role in MAIN_ROLES:
            return agent
    for agent in agents:
        if agent.rsplit("/", 1)[-1] in MAIN_ROLES:
            return agent
    return None


def critical_path(records: Iterable[SpanRecord], job_uid: str | None = None) -> CriticalPath:
    """The critical path of the job whose spans are ``records`` (those of ``job_uid``, if given)."""
    chats: dict[tuple[str, int], _Acc] = {}
    tools: dict[tuple[str, int, int], tuple[float, float]] = {}
    roles: dict[str, str] = {}
    agent_stage: dict[str, int] = {}
    first, last = float("inf"), float("-inf")
    uid = job_uid or ""
    for r in records:
        if job_uid is not None and r.attributes.get(attr.JOB_UID) != job_uid:
            continue
        uid = uid or str(r.attributes.get(attr.JOB_UID) or "")
        first, last = min(first, r.start), max(last, r.end)
        op, agent = r.operation, r.get_str(attr.AGENT_ID)
        if agent is None:
            continue
        role = r.get_str(attr.AGENT_ROLE)
        if role:
            roles.setdefault(agent, role)
        step = r.get_int(attr.STEP)
        if op == "chat" and step is not None:
            _merge(chats, (agent, step), r, r.status != "error")
        elif op == "execute_tool" and step is not None:
            key = (agent, step, r.get_int(attr.TOOL_INDEX) or 0)
            s, e = tools.get(key, (r.start, r.end))
            tools[key] = (min(s, r.start), max(e, r.end))
        elif op == "invoke_agent":
            stage = r.get_int(attr.STAGE)
            if stage is not None:
                agent_stage.setdefault(agent, stage)

    tool_secs: dict[tuple[str, int], float] = {}
    for (agent, step, _), (s, e) in tools.items():
        tool_secs[(agent, step)] = max(tool_secs.get((agent, step), 0.0), e - s)
    main = _main_agent(roles, (a for a, _ in chats))

    main_nodes: dict[int, list[StepNode]] = {}
    branches: dict[int, dict[str, list[StepNode]]] = {}
    for (agent, step), a in sorted(chats.items()):
        if agent == main:
            stage = a.stage if a.stage is not None else step
        else:
            stage = a.stage if a.stage is not None else agent_stage.get(agent, 0)
        node = StepNode(agent, step, stage, a.start, a.end, a.ok, tool_secs.get((agent, step), 0.0))
        if agent == main:
            main_nodes.setdefault(stage, []).append(node)
        else:
            branches.setdefault(stage, {}).setdefault(agent, []).append(node)
    for agent, stage in agent_stage.items():  # sub-agents that never made a model call
        if agent != main:
            branches.setdefault(stage, {}).setdefault(agent, [])

    steps = 0
    seconds = step_seconds = 0.0
    stages: list[StageOnPath] = []
    path: list[StepNode] = []
    for t in sorted(set(main_nodes) | set(branches)):
        mains = main_nodes.get(t, [])
        m_steps = sum(n.counted for n in mains)
        m_secs = sum(n.chat_seconds for n in mains)
        # Candidates in parallel after the main steps: each sub-agent's chain, and the main
        # agent's own tool calls of this stage (no steps, some seconds).
        candidates: list[tuple[int, float, str | None, list[StepNode]]] = [
            (0, sum(n.tool_seconds for n in mains), None, [])
        ]
        for agent, chain in sorted(branches.get(t, {}).items()):
            chain_secs = sum(n.chat_seconds + n.tool_seconds for n in chain)
            candidates.append((sum(n.counted for n in chain), chain_secs, agent, chain))
        by_steps = max(candidates, key=lambda c: (c[0], c[1]))
        by_secs = max(candidates, key=lambda c: c[1])
        steps += m_steps + by_steps[0]
        seconds += m_secs + by_secs[1]
        step_seconds += m_secs + by_steps[1]
        path.extend(mains)
        path.extend(by_steps[3])
        stages.append(
            StageOnPath(
                stage=t,
                main_steps=m_steps,
                subagents=len(branches.get(t, {})),
                critical_agent=by_steps[2],
                subagent_steps=by_steps[0],
                seconds=round(m_secs + by_steps[1], 6),
            )
        )
    return CriticalPath(
        job_uid=uid,
        steps=steps,
        seconds=seconds,
        step_path_seconds=step_seconds,
        total_steps=sum(a.ok for a in chats.values()),
        wall_seconds=max(0.0, last - first) if chats else 0.0,
        stages=tuple(stages),
        nodes=tuple(path),
        main_agent=main,
    )


def _short(agent: str | None) -> str:
    return "-" if agent is None else agent.rsplit("/", 1)[-1]


def format_path(
    path: CriticalPath,
    *,
    name: str | None = None,
    ledger_steps: int | None = None,
    source: str = "",
    max_stages: int = 40,
) -> str:
    """The path as text, one line per stage, for ``kswarm trace``."""
    title = f"{name} ({path.job_uid})" if name else path.job_uid
    lines = [
        f"Critical path of {title}{f' from {source}' if source else ''}",
        f"  critical steps  {path.steps}    total steps {path.total_steps}    "
        f"speedup {path.speedup:.2f}x",
        f"  on the path     {path.step_path_seconds:.3f} s of work    longest path by time "
        f"{path.seconds:.3f} s    wall {path.wall_seconds:.3f} s",
    ]
    if ledger_steps is not None:
        verdict = "agrees" if ledger_steps == path.steps else "DISAGREES"
        lines.append(f"  ledger criticalSteps {ledger_steps}: {verdict}")
    lines.append("")
    lines.append(
        f"  {'stage':>5}  {'main':>4}  {'sub-agents':>10}  {'critical sub-agent':<22}"
        f"{'steps':>5}  {'seconds':>8}"
    )
    shown = path.stages if len(path.stages) <= max_stages else path.stages[: max_stages - 1]
    for s in shown:
        lines.append(
            f"  {s.stage:>5}  {s.main_steps:>4}  {s.subagents:>10}  "
            f"{_short(s.critical_agent):<22}{s.subagent_steps:>5}  {s.seconds:>8.3f}"
        )
    if len(shown) < len(path.stages):
        rest = path.stages[len(shown) :]
        lines.append(
            f"  {'...':>5}  {len(rest)} more stages, "
            f"{sum(s.main_steps + s.subagent_steps for s in rest)} steps"
        )
    return "\n".join(lines)
