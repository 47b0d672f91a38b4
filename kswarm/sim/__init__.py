"""The demo world: an instrument for running, testing and benchmarking kswarm without a GPU.

It is never a default of the product. It holds the simulated vLLM server (``serving``,
``server``, ``engine``, ``protocol``, ``config``, ``metrics``), its scripted model
(``scripted``), a fictional company corpus (``corpus``), the research-task format of the
examples (``tasks``), the scorer of answers against the corpus (``scoring``) and the tools
``search`` and ``write_note`` that read and write it (``search``, ``notes``).

Importing this package loads no server: :mod:`kswarm.sim.serving` starts replicas.
"""

from kswarm.sim.config import Behaviour, SimConfig, trivial_behaviour
from kswarm.sim.notes import write_note_tool
from kswarm.sim.search import search_tool
from kswarm.tools.registry import ToolRegistry

__all__ = [
    "Behaviour",
    "SimConfig",
    "demo_tools",
    "trivial_behaviour",
]


def demo_tools() -> ToolRegistry:
    """A registry with the demo world's tools, ``search`` and ``write_note``."""
    reg = ToolRegistry()
    reg.register(search_tool)
    reg.register(write_note_tool)
    return reg
