"""The one typed model of a swarm job, shared by the CLI, the SDK and the operator.

A ``SwarmJobSpec`` is built from a SwarmJob manifest (``apiVersion: kswarm.dev/v1alpha1``,
``kind: SwarmJob``) by :func:`parse_manifest`. Every validation error is a
:class:`~kswarm.errors.SpecError` that names the field path and what is allowed, e.g.
``spec.subagents.maxConcurrent: must be between 1 and 300, got 1000``.

The CRD (``crds/swarmjobs.yaml``) is the one source of every bound and default: a manifest is
checked against its schema and defaulted from it (:mod:`kswarm.schemas`), so ``kubectl apply``,
``kswarm run`` and the SDK accept and refuse the same jobs. The types are plain dataclasses so
they travel through Temporal's data converter unchanged; ``tests/unit/test_spec_schema.py``
proves their fields and defaults match the schema's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import yaml

from kswarm import schemas
from kswarm.errors import SpecError

__all__ = [
    "API_VERSION",
    "KIND",
    "MAX_SUBAGENTS",
    "AnswerKey",
    "ConfigMapKeyRef",
    "ContextSpec",
    "EvaluationSpec",
    "Limits",
    "Mode",
    "OrchestratorSpec",
    "Phase",
    "Profile",
    "RetrySpec",
    "Role",
    "RolloutSpec",
    "Scorer",
    "SubagentSpec",
    "SwarmJobManifest",
    "SwarmJobSpec",
    "ToolCallKind",
    "ToolCallStatus",
    "load_manifest_file",
    "parse_manifest",
    "parse_spec",
]

T = TypeVar("T")

API_VERSION = "kswarm.dev/v1alpha1"
KIND = "SwarmJob"
MAX_SUBAGENTS = 300
"""Kimi K2.6's published swarm size; the CRD's bound on ``spec.subagents.maxConcurrent``."""


class Mode(StrEnum):
    SWARM = "swarm"
    """An orchestrator spawns sub-agents that work in parallel."""
    SINGLE = "single"
    """One agent with the plain tools and no spawn tool: the baseline of every speedup."""


class Phase(StrEnum):
    """Where a job or an agent stands (``status.phase`` of a SwarmJob)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Role(StrEnum):
    """What an agent is in its job."""

    ORCHESTRATOR = "orchestrator"
    SUBAGENT = "subagent"
    SINGLE = "single"
    TEMPLATE = "template"
    """A sub-agent defined by ``create_subagent``, instantiated by ``assign_task``."""


class ToolCallKind(StrEnum):
    """What a tool call of a step asks the workflow to do."""

    TOOL = "tool"
    """A plain tool to run."""
    SPAWN = "spawn"
    FINISH = "finish"
    DONE = "done"
    """Decided already (a stored result, or a control such as ``create_subagent``)."""
    REFUSED = "refused"


class ToolCallStatus(StrEnum):
    """A tool call's row in the ledger."""

    PENDING = "pending"
    STARTED = "started"
    AWAITING = "awaiting"
    """Waiting for a human's approval."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"


class Profile(StrEnum):
    SWARM = "swarm"
    SERIAL = "serial"


class Scorer(StrEnum):
    CORPUS_ITEM_F1 = "corpus-item-f1"
    """Item-level F1 of a demo-world research task against the fictional corpus."""
    ITEM_F1 = "item-f1"
    """Item-level F1 of the answer's JSON rows over the answer key's (entity, attribute) cells."""
    EXACT_MATCH = "exact-match"
    """1 when the answer equals the answer key's text, else 0."""
    USER = "user"
    """The function named in ``EvaluationSpec.function``."""


MODES = tuple(Mode)
PROFILES = tuple(Profile)


@dataclass(frozen=True, kw_only=True)
class OrchestratorSpec:
    pool: str = "default"
    """Model pool that serves the orchestrator's model calls: a pool's name as the workers know
    it, ``NAME`` or ``NAMESPACE/NAME`` (a SwarmJob object names a ModelPool of its own namespace
    by ``NAME``; the operator starts the workflow with ``NAMESPACE/NAME``)."""
    model: str = ""
    """Model name; empty means the pool's model."""
    max_steps: int = 50
    """Orchestrator steps (model calls) before the job fails with MaxStepsExceeded."""
    system_prompt: str = ""
    """Extra instructions placed before the built-in orchestrator prompt."""
    profile: Profile = Profile.SWARM
    """How a scripted (simulated) orchestrator splits work: ``swarm`` or ``serial``."""


@dataclass(frozen=True, kw_only=True)
class SubagentSpec:
    pool: str = "default"
    """Model pool that serves sub-agent model calls (named as ``OrchestratorSpec.pool``)."""
    model: str = ""
    """Model name; empty means the pool's model."""
    max_concurrent: int = 100
    """Sub-agents running at once; more are queued inside their stage."""
    max_steps: int = 30
    """Steps one sub-agent may take before it ends with what it has."""
    tools: tuple[str, ...] = ()
    """Tools a sub-agent gets; empty means the job's ``tools``."""


@dataclass(frozen=True, kw_only=True)
class ConfigMapKeyRef:
    name: str
    """Name of a ConfigMap of the job's namespace."""
    key: str
    """Key inside its data."""


@dataclass(frozen=True, kw_only=True)
class AnswerKey:
    rows: tuple[dict[str, Any], ...] = ()
    """Expected table: one object per item, with ``entity`` and one field per attribute."""
    text: str | None = None
    """Expected answer text (exact match)."""
    file: str | None = None
    """A JSON or YAML file with ``rows`` or ``text``; ``kswarm run`` reads it (relative to the
    manifest) and inlines it before the job starts."""
    config_map: ConfigMapKeyRef | None = None
    """A ConfigMap key holding the key as the file would."""


@dataclass(frozen=True, kw_only=True)
class EvaluationSpec:
    scorer: Scorer
    """How the job's answer is scored; the score is the job's ``quality``."""
    function: str | None = None
    """The user scorer as ``module:function`` (scorer ``user``)."""
    success_threshold: float | None = None
    """Quality a succeeded job must reach to count as a success; ``None``: succeeding is enough."""
    answer_key: AnswerKey | None = None
    """The expected answer (scorers ``item-f1`` and ``exact-match``; passed to a user scorer)."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_tool_calls: int = 1500
    """Tool calls the whole job may make."""
    max_tokens: int | None = None
    """Input plus output tokens the whole job may spend."""
    deadline_seconds: int | None = None
    """Wall-clock seconds from start until the job ends with DeadlineExceeded."""
    max_tool_errors: int = 8
    """Refused tool calls one agent may make; the next ends it with ToolErrorBudgetExceeded."""
    max_repeated_calls: int = 3
    """Steps in a row with the same calls and arguments before an agent ends with
    RepeatedToolCall."""
    max_critical_steps: int | None = None
    """Critical steps the job may take before it ends with BudgetExceeded."""


@dataclass(frozen=True, kw_only=True)
class ContextSpec:
    enabled: bool = True
    """Manage each agent's context (mask old tool results, then drop the oldest steps)."""
    threshold: float = 0.8
    """Share of the pool's context window a prompt may fill before it is cut."""
    keep_steps: int = 2
    """Latest steps whose tool results are never masked nor dropped."""


@dataclass(frozen=True, kw_only=True)
class RolloutSpec:
    samples: int
    """Samples in the group."""
    epoch: int = 0
    """Training epoch of the group, from 0."""
    epochs: int = 1
    """Epochs of the training run, over which ``λ_aux`` anneals."""
    lambda_start: float = 0.1
    """``λ_aux`` at epoch 0."""
    lambda_end: float = 0.0
    """``λ_aux`` at the last epoch."""
    temperature: float = 1.0
    """Sampling temperature of every model call of the samples."""
    seed: int = 0
    """Sample ``i`` samples with ``seed + i``."""


@dataclass(frozen=True, kw_only=True)
class RetrySpec:
    max_attempts: int = 5
    """Attempts per model or tool call, the first included."""
    initial_interval_seconds: float = 1.0
    """Delay before the first retry."""
    backoff_coefficient: float = 2.0
    """Growth of the delay from one retry to the next."""
    maximum_interval_seconds: float = 30.0
    """Cap on the delay between retries."""


@dataclass(frozen=True, kw_only=True)
class SwarmJobSpec:
    task: str
    """What the job must achieve, in natural language."""
    mode: Mode = Mode.SWARM
    """``swarm`` (orchestrator with sub-agents) or ``single`` (one agent, the baseline)."""
    orchestrator: OrchestratorSpec = field(default_factory=OrchestratorSpec)
    subagents: SubagentSpec = field(default_factory=SubagentSpec)
    tools: tuple[str, ...] = ()
    """The job's tool allow-list; calls to any other tool are refused and recorded. Empty: the
    orchestrator has only its spawn and finish controls."""
    require_approval: tuple[str, ...] = ()
    """Tools (exact names or ``SERVER__*``) whose calls in this job wait for a person's decision,
    besides those their ToolServer marks ``requireApproval``."""
    evaluation: EvaluationSpec | None = None
    """How to score the answer; ``None``: the job has no ``quality``."""
    rollout: RolloutSpec | None = None
    """Run as a rollout group (``kswarm rollout``, ``RolloutWorkflow``); ``None``: one job."""
    limits: Limits = field(default_factory=Limits)
    retry: RetrySpec = field(default_factory=RetrySpec)
    context: ContextSpec = field(default_factory=ContextSpec)

    @property
    def subagent_tools(self) -> tuple[str, ...]:
        return self.subagents.tools or self.tools

    def with_mode(self, mode: str) -> SwarmJobSpec:
        if mode not in MODES:
            raise SpecError("spec.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        return dataclasses.replace(self, mode=Mode(mode))

    def to_manifest_spec(self) -> dict[str, Any]:
        """The camelCase ``spec`` object of a manifest (inverse of :func:`parse_manifest`)."""
        spec: dict[str, Any] = _camelize(self)
        return spec


@dataclass(frozen=True, kw_only=True)
class SwarmJobManifest:
    name: str
    namespace: str
    uid: str
    spec: SwarmJobSpec


# --------------------------------------------------------------------------- parsing


def load_manifest_file(path: str) -> dict[str, Any]:
    """Read one SwarmJob manifest from a YAML file; errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        raise SpecError("", f"cannot read {path}: {e.strerror}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError("", f"{path}: invalid YAML{where}: {problem}") from e
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not jobs:
        raise SpecError("kind", f"{path} holds no document of kind {KIND}")
    if len(jobs) > 1:
        raise SpecError("", f"{path} holds {len(jobs)} SwarmJobs; give one per file")
    return jobs[0]


def parse_manifest(
    manifest: Mapping[str, Any],
    *,
    known_tools: Iterable[str] | None = None,
    known_pools: Iterable[str] | None = None,
) -> SwarmJobManifest:
    """Validate a SwarmJob manifest and build its typed form.

    ``known_tools`` and ``known_pools``, when given, also check that every named tool and pool
    exists (the API server cannot know them; the embedded stack and the operator can).
    """
    if not isinstance(manifest, Mapping):
        raise SpecError("", f"a manifest must be a mapping, got {_kind(manifest)}")
    api = manifest.get("apiVersion")
    if api != API_VERSION:
        raise SpecError("apiVersion", f"must be {API_VERSION!r}, got {api!r}")
    if manifest.get("kind") != KIND:
        raise SpecError("kind", f"must be {KIND!r}, got {manifest.get('kind')!r}")
    meta = manifest.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise SpecError("metadata", f"must be a mapping, got {_kind(meta)}")
    name = meta.get("name") or meta.get("generateName") or ""
    if not isinstance(name, str) or not name:
        raise SpecError("metadata.name", "is required")
    namespace = str(meta.get("namespace") or "default")
    uid = str(meta.get("uid") or "")
    spec = parse_spec(manifest.get("spec"), known_tools=known_tools, known_pools=known_pools)
    if not uid:
        uid = job_uid_for(namespace, name, spec)
    return SwarmJobManifest(name=name, namespace=namespace, uid=uid, spec=spec)


def job_uid_for(namespace: str, name: str, spec: SwarmJobSpec) -> str:
    """A stable uid for a job that has none (outside Kubernetes): same job, same id."""
    fields = dataclasses.asdict(spec)
    if not fields["require_approval"]:  # added later: the jobs without it keep their uid
        del fields["require_approval"]
    body = json.dumps([namespace, name, fields], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def parse_spec(
    raw: Any,
    *,
    known_tools: Iterable[str] | None = None,
    known_pools: Iterable[str] | None = None,
) -> SwarmJobSpec:
    """Check ``raw`` (a manifest's ``spec``) against the CRD's schema and build its typed form.

    Bounds, enums and defaults come from ``crds/swarmjobs.yaml`` only (see
    :mod:`kswarm.schemas`); what the schema cannot know (pool names, known tools) is checked
    here.
    """
    spec = schemas.validate(raw, "spec")
    for path in ("spec.orchestrator.pool", "spec.subagents.pool"):
        _check_pool(path, spec[path.split(".")[1]]["pool"])
    result = _build(SwarmJobSpec, spec)
    if known_tools is not None:
        known = set(known_tools)
        for path, names in (
            ("spec.tools", result.tools),
            ("spec.subagents.tools", result.subagents.tools),
            ("spec.requireApproval", result.require_approval),
        ):
            for i, t in enumerate(names):
                _check_tool(f"{path}[{i}]", t, known)
    if known_pools is not None:
        pools = set(known_pools)
        for path, pool in (
            ("spec.orchestrator.pool", result.orchestrator.pool),
            ("spec.subagents.pool", result.subagents.pool),
        ):
            if pool not in pools:
                raise SpecError(
                    path, f"unknown pool {pool!r}; known pools: {', '.join(sorted(pools))}"
                )
    return result


def _build(cls: type[T], raw: Mapping[str, Any]) -> T:
    """An instance of the spec dataclass ``cls`` from its (validated, defaulted) camelCase form;
    a field the manifest leaves out keeps the dataclass default."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = _camel(f.name)
        if key not in raw:
            continue
        values[f.name] = _typed(hints[f.name], raw[key])
    return cls(**values)


def _typed(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _typed(args[0], value)
    if typing.get_origin(hint) is tuple:
        return tuple(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return hint(value)
    if hint is float:
        return float(value)
    return value


def _check_tool(path: str, name: str, known: set[str]) -> None:
    """``name`` is a known tool, or ``SERVER__*`` for a server some known tool comes from."""
    if name.endswith("__*"):
        server = name[:-3]
        servers = ", ".join(sorted({k.split("__")[0] for k in known if "__" in k})) or "(none)"
        if not any(k.startswith(server + "__") for k in known):
            raise SpecError(path, f"unknown tool server {server!r}; known tool servers: {servers}")
    elif name not in known:
        raise SpecError(path, f"unknown tool {name!r}; known tools: {', '.join(sorted(known))}")


def _check_pool(path: str, pool: str) -> None:
    namespace, sep, name = pool.partition("/")
    if sep and (not namespace or not name or "/" in name):
        raise SpecError(path, f"must be a pool name, NAME or NAMESPACE/NAME, got {pool!r}")


# --------------------------------------------------------------------------- helpers


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}.get(
        type(v), type(v).__name__
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _camelize(v: Any) -> Any:
    """The manifest form of a spec value: field names camelCased, ``None`` left out; the
    content of free-form objects (answer key rows) is kept as written."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {
            _camel(f.name): _camelize(getattr(v, f.name))
            for f in dataclasses.fields(v)
            if getattr(v, f.name) is not None
        }
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, list | tuple):
        return [_camelize(x) for x in v]
    if isinstance(v, StrEnum):
        return str(v)
    return v
