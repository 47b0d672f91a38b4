"""The tool registry: what an agent may call, with its JSON schema and its side effects.

A tool is an async callable that receives its parsed arguments and a :class:`ToolContext`
carrying the call's idempotency key, so a side-effecting tool can deduplicate downstream when a
call runs again after its worker died. ``local`` tools are short and run as Temporal local
activities; the others run as regular activities with heartbeats.

Tools of an MCP server are named ``SERVER__TOOL``; an allow-list entry ``SERVER__*`` allows every
tool of that server (:func:`allowed_by`, :meth:`ToolRegistry.expand`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from kswarm.errors import ToolError, UnknownTool

__all__ = [
    "SERVER_SEPARATOR",
    "SERVER_WILDCARD",
    "Progress",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "allowed_by",
    "server_of",
    "validate_arguments",
]

SERVER_SEPARATOR = "__"
"""Between a server's name and its tool's: ``git__git_status``."""
SERVER_WILDCARD = SERVER_SEPARATOR + "*"
"""An allow-list entry ``SERVER__*`` allows every tool of ``SERVER``."""

Progress = Callable[[float, float | None, str | None], None]
"""Told ``(progress, total, message)`` while a long call runs; the tool activity heartbeats."""


@dataclass(frozen=True)
class ToolContext:
    key: str
    """Idempotency key ``job/agent/step/index``; stable across retries of the same call."""
    job_uid: str
    agent_id: str
    attempt: int
    progress: Progress | None = None
    """Where a long call reports progress (``None``: nobody listens)."""


ToolFn = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments object."""
    fn: ToolFn
    side_effects: bool = False
    """True when running the tool twice would change the world twice."""
    local: bool = True
    """Short tools run as local activities (about 2 ms of overhead instead of 40 ms)."""
    server: str | None = None
    """The MCP tool server the tool comes from; ``None`` for a tool of this process."""
    require_approval: bool = False
    """A call waits until a person approves or denies it."""
    validator: Any = field(init=False, repr=False, compare=False)
    """The compiled checker of ``parameters``."""

    def __post_init__(self) -> None:
        cls = jsonschema.validators.validator_for(
            self.parameters, default=jsonschema.Draft202012Validator
        )
        try:
            cls.check_schema(self.parameters)
        except jsonschema.SchemaError as e:
            raise ToolError(f"{self.name}: its argument schema is invalid: {e.message}") from None
        object.__setattr__(self, "validator", cls(self.parameters))

    def openai_spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def _argument_error(tool: str, e: jsonschema.ValidationError) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
    where = where.removeprefix(".")
    schema = e.schema if isinstance(e.schema, dict) else {}
    match e.validator:
        case "required":
            missing = str(e.message).split("'")[1]
            name = f"{where}.{missing}" if where else missing
            return f"{tool}: missing required argument {name!r}"
        case "additionalProperties":
            known = set(schema.get("properties") or {})
            extra = sorted(set(e.instance) - known) if isinstance(e.instance, dict) else []
            name = ".".join(p for p in (where, extra[0] if extra else "") if p)
            return f"{tool}: unknown argument {name!r}"
        case "type":
            want = schema.get("type")
            want = " or ".join(want) if isinstance(want, list) else str(want)
            what = f"must be {want}, got {_json_kind(e.instance)}"
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            lo, hi = schema.get("minimum"), schema.get("maximum")
            what = f"must be in [{lo}, {hi}], got {e.instance!r}"
        case _:
            what = str(e.message)
    if not where:
        return f"{tool}: arguments {what}"
    return f"{tool}: argument {where!r} {what}"


def validate_arguments(tool: Tool, args: Any) -> dict[str, Any]:
    """Check arguments against the tool's JSON schema; the error names the argument.

    The schema is the tool's own (for an MCP tool, the server's ``inputSchema``), checked with
    the ``jsonschema`` library under the dialect it declares (JSON Schema 2020-12 when it names
    none, as MCP specifies).
    """
    if not isinstance(args, dict):
        raise ToolError(f"{tool.name}: arguments must be a JSON object, got {_json_kind(args)}")
    error = jsonschema.exceptions.best_match(tool.validator.iter_errors(args))
    if error is not None:
        raise ToolError(_argument_error(tool.name, error))
    return args


def server_of(name: str) -> str:
    """The MCP server an offered tool name comes from (``git`` of ``git__git_log``), else ``""``."""
    server, sep, _ = name.partition(SERVER_SEPARATOR)
    return server if sep else ""


def allowed_by(allow_list: Iterable[str], name: str) -> bool:
    """Whether ``name`` is on ``allow_list``: by exact name, or ``SERVER__*`` for a server's."""
    for entry in allow_list:
        if entry == name or (entry.endswith(SERVER_WILDCARD) and name.startswith(entry[:-1])):
            return True
    return False


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> Tool:
        if tool.name in self.tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self.tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            raise UnknownTool(
                f"unknown tool {name!r}; known tools: {', '.join(sorted(self.tools))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self.tools)

    def servers(self) -> list[str]:
        """The MCP servers some registered tool comes from."""
        return sorted({t.server for t in self.tools.values() if t.server})

    def expand(self, allow_list: Iterable[str]) -> list[str]:
        """The registered tools ``allow_list`` allows, in its order (``SERVER__*`` expanded)."""
        out: list[str] = []
        for entry in allow_list:
            if entry.endswith(SERVER_WILDCARD):
                out += [n for n in sorted(self.tools) if n.startswith(entry[:-1])]
            elif entry in self.tools:
                out.append(entry)
        return list(dict.fromkeys(out))

    def openai_specs(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """Specs of the tools ``names`` allows (exact names or ``SERVER__*``)."""
        return [self.tools[n].openai_spec() for n in self.expand(names)]
