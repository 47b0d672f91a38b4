"""Tools agents can call: the registry, argument checking, MCP tool servers, and the controls.

The product ships no plain tool of its own: a job names its tools, which come from MCP tool
servers (:mod:`kswarm.tools.mcp`, configured by :mod:`kswarm.tools.servers`) or from a registry
the process builds (the demo world's ``search`` and ``write_note`` live in :mod:`kswarm.sim`).
"""

from kswarm.tools.registry import (
    SERVER_SEPARATOR,
    SERVER_WILDCARD,
    Progress,
    Tool,
    ToolContext,
    ToolRegistry,
    allowed_by,
    server_of,
    validate_arguments,
)

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
