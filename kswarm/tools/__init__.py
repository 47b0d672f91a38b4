"""Tools agents can call: a registry, the built-in ``search`` and ``write_note``."""

from kswarm.tools.notes import write_note_tool
from kswarm.tools.registry import Tool, ToolContext, ToolRegistry, validate_arguments
from kswarm.tools.search import search_tool

__all__ = ["Tool", "ToolContext", "ToolRegistry", "default_registry", "validate_arguments"]


def default_registry() -> ToolRegistry:
    """A registry with the built-in tools."""
    reg = ToolRegistry()
    reg.register(search_tool)
    reg.register(write_note_tool)
    return reg
