"""The one typed model of a swarm job, shared by the CLI, the SDK and the operator.

A ``SwarmJobSpec`` is built from a SwarmJob manifest (``apiVersion: kswarm.dev/v1alpha1``,
``kind: SwarmJob``) by :func:`parse_manifest`. Every validation error is a
:class:`~kswarm.errors.SpecError` that names the field path and what is allowed, e.g.
``spec.subagents.maxConcurrent: must be between 1 and 100, got 1000``.

The types are plain dataclasses so they travel through Temporal's default data converter
unchanged, and the same defaults hold here, in the CRD schema and in the docs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from kswarm.errors import SpecError

__all__ = [
    "API_VERSION",
    "KIND",
    "Limits",
    "OrchestratorSpec",
    "RetrySpec",
    "SubagentSpec",
    "SwarmJobManifest",
    "SwarmJobSpec",
    "load_manifest_file",
    "parse_manifest",
]

API_VERSION = "kswarm.dev/v1alpha1"
KIND = "SwarmJob"

Mode = Literal["swarm", "single"]
MODES = ("swarm", "single")
PROFILES = ("swarm", "serial")
MAX_SUBAGENTS = 100


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
    profile: str = "swarm"
    """How a scripted (simulated) orchestrator splits work: ``swarm`` or ``serial``."""


@dataclass(frozen=True, kw_only=True)
class SubagentSpec:
    pool: str = "default"
    """Model pool that serves sub-agent model calls (named as ``OrchestratorSpec.pool``)."""
    model: str = ""
    """Model name; empty means the pool's model."""
    max_concurrent: int = 100
    """Sub-agents running at once (1..100); more are queued inside their stage."""
    max_steps: int = 30
    """Steps one sub-agent may take before it ends with what it has."""
    tools: tuple[str, ...] = ()
    """Tools a sub-agent gets; empty means the job's ``tools``."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_tool_calls: int = 1500
    """Tool calls the whole job may make."""
    max_tokens: int | None = None
    """Input plus output tokens the whole job may spend."""
    deadline_seconds: int | None = None
    """Wall-clock seconds from start until the job ends with DeadlineExceeded."""


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
    mode: str = "swarm"
    """``swarm`` (orchestrator with sub-agents) or ``single`` (one agent, the baseline)."""
    orchestrator: OrchestratorSpec = field(default_factory=OrchestratorSpec)
    subagents: SubagentSpec = field(default_factory=SubagentSpec)
    tools: tuple[str, ...] = ("search",)
    """The job's tool allow-list; calls to any other tool are refused and recorded."""
    limits: Limits = field(default_factory=Limits)
    retry: RetrySpec = field(default_factory=RetrySpec)

    @property
    def subagent_tools(self) -> tuple[str, ...]:
        return self.subagents.tools or self.tools

    def with_mode(self, mode: str) -> SwarmJobSpec:
        _check_enum("spec.mode", mode, MODES)
        return dataclasses.replace(self, mode=mode)

    def to_manifest_spec(self) -> dict[str, Any]:
        """The camelCase ``spec`` object of a manifest (inverse of :func:`parse_manifest`)."""
        spec: dict[str, Any] = _camelize(dataclasses.asdict(self))
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
    meta = _mapping(manifest.get("metadata", {}), "metadata")
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
    body = json.dumps([namespace, name, dataclasses.asdict(spec)], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def parse_spec(
    raw: Any,
    *,
    known_tools: Iterable[str] | None = None,
    known_pools: Iterable[str] | None = None,
) -> SwarmJobSpec:
    if raw is None:
        raise SpecError("spec", "is required")
    spec = _mapping(raw, "spec")
    _no_unknown(
        spec, "spec", {"task", "mode", "orchestrator", "subagents", "tools", "limits", "retry"}
    )
    task = spec.get("task")
    if task is None:
        raise SpecError("spec.task", "is required")
    if not isinstance(task, str) or not task.strip():
        raise SpecError("spec.task", f"must be a non-empty string, got {_show(task)}")
    mode = spec.get("mode", "swarm")
    _check_enum("spec.mode", mode, MODES)

    o = _mapping(spec.get("orchestrator", {}), "spec.orchestrator")
    _no_unknown(o, "spec.orchestrator", {"pool", "model", "maxSteps", "systemPrompt", "profile"})
    orchestrator = OrchestratorSpec(
        pool=_pool(o, "spec.orchestrator.pool"),
        model=_str(o, "model", "spec.orchestrator.model", ""),
        max_steps=_int(o, "maxSteps", "spec.orchestrator.maxSteps", 50, 1, 1000),
        system_prompt=_str(o, "systemPrompt", "spec.orchestrator.systemPrompt", ""),
        profile=_str(o, "profile", "spec.orchestrator.profile", "swarm"),
    )
    _check_enum("spec.orchestrator.profile", orchestrator.profile, PROFILES)

    s = _mapping(spec.get("subagents", {}), "spec.subagents")
    _no_unknown(s, "spec.subagents", {"pool", "model", "maxConcurrent", "maxSteps", "tools"})
    subagents = SubagentSpec(
        pool=_pool(s, "spec.subagents.pool"),
        model=_str(s, "model", "spec.subagents.model", ""),
        max_concurrent=_int(
            s, "maxConcurrent", "spec.subagents.maxConcurrent", 100, 1, MAX_SUBAGENTS
        ),
        max_steps=_int(s, "maxSteps", "spec.subagents.maxSteps", 30, 1, 1000),
        tools=_str_list(s.get("tools", []), "spec.subagents.tools"),
    )
    tools = _str_list(spec.get("tools", ["search"]), "spec.tools")

    lim = _mapping(spec.get("limits", {}), "spec.limits")
    _no_unknown(lim, "spec.limits", {"maxToolCalls", "maxTokens", "deadlineSeconds"})
    limits = Limits(
        max_tool_calls=_int(lim, "maxToolCalls", "spec.limits.maxToolCalls", 1500, 1, 100_000),
        max_tokens=_opt_int(lim, "maxTokens", "spec.limits.maxTokens", 1, 10**12),
        deadline_seconds=_opt_int(
            lim, "deadlineSeconds", "spec.limits.deadlineSeconds", 1, 7 * 24 * 3600
        ),
    )

    r = _mapping(spec.get("retry", {}), "spec.retry")
    _no_unknown(
        r,
        "spec.retry",
        {"maxAttempts", "initialIntervalSeconds", "backoffCoefficient", "maximumIntervalSeconds"},
    )
    retry = RetrySpec(
        max_attempts=_int(r, "maxAttempts", "spec.retry.maxAttempts", 5, 1, 100),
        initial_interval_seconds=_num(
            r, "initialIntervalSeconds", "spec.retry.initialIntervalSeconds", 1.0, 0.001, 3600
        ),
        backoff_coefficient=_num(
            r, "backoffCoefficient", "spec.retry.backoffCoefficient", 2.0, 1.0, 10.0
        ),
        maximum_interval_seconds=_num(
            r, "maximumIntervalSeconds", "spec.retry.maximumIntervalSeconds", 30.0, 0.001, 3600
        ),
    )
    if retry.maximum_interval_seconds < retry.initial_interval_seconds:
        raise SpecError(
            "spec.retry.maximumIntervalSeconds",
            f"must be at least spec.retry.initialIntervalSeconds "
            f"({retry.initial_interval_seconds}), got {retry.maximum_interval_seconds}",
        )

    result = SwarmJobSpec(
        task=task,
        mode=mode,
        orchestrator=orchestrator,
        subagents=subagents,
        tools=tools,
        limits=limits,
        retry=retry,
    )
    if known_tools is not None:
        known = set(known_tools)
        for path, names in (("spec.tools", tools), ("spec.subagents.tools", subagents.tools)):
            for i, t in enumerate(names):
                if t not in known:
                    raise SpecError(
                        f"{path}[{i}]",
                        f"unknown tool {t!r}; known tools: {', '.join(sorted(known))}",
                    )
    if known_pools is not None:
        pools = set(known_pools)
        for path, pool in (
            ("spec.orchestrator.pool", orchestrator.pool),
            ("spec.subagents.pool", subagents.pool),
        ):
            if pool not in pools:
                raise SpecError(
                    path, f"unknown pool {pool!r}; known pools: {', '.join(sorted(pools))}"
                )
    return result


# --------------------------------------------------------------------------- helpers


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}.get(
        type(v), type(v).__name__
    )


def _show(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    return f"{_kind(v)} {v!r}" if isinstance(v, list | dict) else repr(v)


def _mapping(v: Any, path: str) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise SpecError(path, f"must be a mapping, got {_kind(v)}")
    return v


def _no_unknown(m: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    for key in m:
        if key not in allowed:
            raise SpecError(
                f"{path}.{key}", f"unknown field; allowed fields: {', '.join(sorted(allowed))}"
            )


def _check_enum(path: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SpecError(path, f"must be one of {', '.join(allowed)}, got {_show(value)}")


def _str(m: Mapping[str, Any], key: str, path: str, default: str) -> str:
    v = m.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise SpecError(path, f"must be a string, got {_kind(v)}")
    return v


def _pool(m: Mapping[str, Any], path: str) -> str:
    v = _str(m, "pool", path, "default")
    if not v.strip():
        raise SpecError(path, "must name a model pool, got an empty string")
    namespace, sep, name = v.partition("/")
    if sep and (not namespace or not name or "/" in name):
        raise SpecError(path, f"must be a pool name, NAME or NAMESPACE/NAME, got {v!r}")
    return v


def _int(m: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    v = m.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecError(path, f"must be an integer between {lo} and {hi}, got {_show(v)}")
    if not lo <= v <= hi:
        raise SpecError(path, f"must be between {lo} and {hi}, got {v}")
    return v


def _opt_int(m: Mapping[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
    if m.get(key) is None:
        return None
    return _int(m, key, path, lo, lo, hi)


def _num(m: Mapping[str, Any], key: str, path: str, default: float, lo: float, hi: float) -> float:
    v = m.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpecError(path, f"must be a number between {lo} and {hi}, got {_show(v)}")
    if not lo <= v <= hi:
        raise SpecError(path, f"must be between {lo} and {hi}, got {v}")
    return float(v)


def _str_list(v: Any, path: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise SpecError(path, f"must be a list of strings, got {_kind(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, str) or not item:
            raise SpecError(f"{path}[{i}]", f"must be a non-empty string, got {_show(item)}")
    return tuple(v)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _camelize(v: Any) -> Any:
    if isinstance(v, dict):
        return {_camel(k): _camelize(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_camelize(x) for x in v]
    return v
