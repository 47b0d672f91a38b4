"""Tool servers: where MCP tools come from, as a tools file or a ToolServer object describes them.

A tools file (``kswarm run JOB --tools tools.yaml``; the workers' ConfigMap on Kubernetes) lists
servers by name, each with the fields of a ToolServer's ``spec``::

    servers:
      - name: time                      # tools offered as time__get_current_time, ...
        command: mcp-server-time        # stdio: started and stopped with the run
        args: [--local-timezone, UTC]
      - name: search
        url: https://tools.example.com/mcp   # streamable HTTP
        bearerTokenEnv: SEARCH_TOKEN         # or bearerTokenFile; headers: {...}
        timeoutSeconds: 30
        maxConcurrency: 8
        requireApproval: [delete_index]

``crds/toolservers.yaml`` is the one source of the fields, their bounds and defaults (checked by
:mod:`kswarm.schemas`); a server's name is checked here, since its tools are offered to models
as ``NAME__TOOL``, which must be a valid function name. Errors are
:class:`~kswarm.errors.ConfigError` naming the file and the field (``servers[1].url``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from kswarm import schemas
from kswarm.errors import ConfigError, SpecError

__all__ = [
    "SERVER_NAME",
    "ToolServerConfig",
    "load_tools_file",
    "parse_tools_text",
    "server_config",
    "server_entry",
]

SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$")
"""Letters, digits and ``-``, at most 40: ``NAME__TOOL`` stays a valid function name, and a
name never holds the ``__`` that separates it from its tools."""


@dataclass(frozen=True, kw_only=True)
class ToolServerConfig:
    name: str
    """The server's name; its tools are offered as ``NAME__TOOL``."""
    url: str | None = None
    """Streamable HTTP endpoint; excludes ``command``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra HTTP headers of every request."""
    bearer_token_file: str | None = None
    """File holding a bearer token, read at each connection (a rotated token is followed)."""
    bearer_token_env: str | None = None
    """Environment variable holding a bearer token."""
    command: str | None = None
    """Executable of a stdio server; excludes ``url``."""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to this process's environment for ``command``."""
    timeout_seconds: float = 60.0
    """One call's limit; a call past it fails as the server being unavailable (retried)."""
    max_concurrency: int = 16
    """Calls this process keeps in flight to the server; more wait."""
    long_running: bool = False
    """Calls run as regular activities with heartbeats instead of in the step's local batch."""
    require_approval: tuple[str, ...] = ()
    """Tools (names on the server, or ``*``) whose calls wait for a person's approval."""

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    def http_headers(self) -> dict[str, str]:
        """The headers of a request, the bearer token read now; errors name the server."""
        headers = dict(self.headers)
        token: str | None = None
        if self.bearer_token_file:
            try:
                with open(self.bearer_token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as e:
                raise ConfigError(
                    f"tool server {self.name!r}: bearerTokenFile {self.bearer_token_file}: "
                    f"{e.strerror}"
                ) from None
        elif self.bearer_token_env:
            token = os.environ.get(self.bearer_token_env)
            if not token:
                raise ConfigError(
                    f"tool server {self.name!r}: bearerTokenEnv {self.bearer_token_env} is not set"
                )
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def requires_approval(self, tool: str) -> bool:
        return "*" in self.require_approval or tool in self.require_approval


def server_config(name: str, spec: Any, where: str = "spec") -> ToolServerConfig:
    """A server from its name and a ToolServer ``spec`` (checked against the CRD's schema).

    ``where`` names the spec in errors (``servers[1]`` for a tools file's entry).
    """
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise SpecError(
            f"{where}.name" if where != "spec" else "metadata.name",
            f"must be letters, digits and '-' (at most 40, no '_'), got {name!r}: its tools are "
            "offered to models as NAME__TOOL",
        )
    try:
        s = schemas.validate(spec, "spec", plural="toolservers")
    except SpecError as e:
        path = e.path.removeprefix("spec")
        message = e.message.replace("spec.", f"{where}." if where != "spec" else "spec.")
        raise SpecError(f"{where}{path}", message) from None
    return ToolServerConfig(
        name=name,
        url=s.get("url"),
        headers=dict(s.get("headers") or {}),
        bearer_token_file=s.get("bearerTokenFile"),
        bearer_token_env=s.get("bearerTokenEnv"),
        command=s.get("command"),
        args=tuple(s.get("args") or ()),
        env=dict(s.get("env") or {}),
        timeout_seconds=float(s["timeoutSeconds"]),
        max_concurrency=int(s["maxConcurrency"]),
        long_running=bool(s["longRunning"]),
        require_approval=tuple(s.get("requireApproval") or ()),
    )


def server_entry(server: ToolServerConfig) -> dict[str, Any]:
    """A tools-file entry for ``server`` (inverse of :func:`server_config`); a token stays in its
    file or variable."""
    entry: dict[str, Any] = {"name": server.name}
    for key, value in (
        ("url", server.url),
        ("headers", dict(server.headers) or None),
        ("bearerTokenFile", server.bearer_token_file),
        ("bearerTokenEnv", server.bearer_token_env),
        ("command", server.command),
        ("args", list(server.args) or None),
        ("env", dict(server.env) or None),
    ):
        if value is not None:
            entry[key] = value
    entry["timeoutSeconds"] = server.timeout_seconds
    entry["maxConcurrency"] = server.max_concurrency
    entry["longRunning"] = server.long_running
    if server.require_approval:
        entry["requireApproval"] = list(server.require_approval)
    return entry


def parse_tools_text(text: str | bytes, source: str) -> list[ToolServerConfig]:
    """The servers of a tools document; ``source`` names it in errors."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    if doc is None:
        doc = {"servers": []}
    if not isinstance(doc, dict) or set(doc) - {"servers"}:
        raise ConfigError(f"{source}: must be a mapping with one key, servers (a list)")
    items = doc.get("servers") or []
    if not isinstance(items, list):
        raise ConfigError(f"{source}: servers: must be a list")
    servers: list[ToolServerConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"servers[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: {where}: must be a mapping")
        spec = {k: v for k, v in item.items() if k != "name"}
        if "bearerTokenSecret" in spec:
            raise ConfigError(
                f"{source}: {where}.bearerTokenSecret: only a ToolServer object names a "
                "Secret; give bearerTokenFile or bearerTokenEnv here"
            )
        try:
            server = server_config(item.get("name"), spec, where)  # type: ignore[arg-type]
        except SpecError as e:
            raise ConfigError(f"{source}: {e}") from None
        if server.name in seen:
            raise ConfigError(f"{source}: {where}.name: {server.name!r} is listed twice")
        seen.add(server.name)
        servers.append(server)
    return servers


def load_tools_file(path: str) -> list[ToolServerConfig]:
    try:
        with open(path, "rb") as fh:
            text = fh.read()
    except OSError as e:
        raise ConfigError(f"tools file {path}: {e.strerror}") from None
    return parse_tools_text(text, path)
