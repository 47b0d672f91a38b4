"""Tools agents can call: the registry, argument checking, and the orchestrator's controls.

The product ships no plain tool of its own: a job names its tools, which come from MCP tool
servers or from a registry the process builds (the demo world's ``search`` and ``write_note``
live in :mod:`kswarm.sim`).
"""

from kswarm.tools.registry import Tool, ToolContext, ToolRegistry, validate_arguments

__all__ = ["Tool", "ToolContext", "ToolRegistry", "validate_arguments"]
