"""What a module loads when imported, in a fresh interpreter: the product path stays free of the
simulator.

import-linter checks the static imports; this checks what actually lands in ``sys.modules``
(re-exports, imports inside ``__init__`` files, third-party packages), which is what a worker
pays for at start.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SIMULATOR_SERVER = (
    "aiohttp.web",
    "kswarm.sim.server",
    "kswarm.sim.serving",
    "kswarm.sim.engine",
    "kswarm.sim.protocol",
    "kswarm.sim.scripted",
)


def loaded_after(module: str) -> list[str]:
    """The names in ``sys.modules`` after ``import module`` in a new interpreter."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    names: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert module in names  # the probe saw the import it was asked about
    return names


def under(names: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("module", ["kswarm.llm.client", "kswarm.llm"])
def test_the_llm_client_loads_no_simulator_module_and_no_web_server(module: str) -> None:
    assert under(loaded_after(module), ("kswarm.sim", "aiohttp.web")) == []


def test_the_worker_loads_no_simulated_server() -> None:
    """The worker registers the demo tools and the corpus scorer (``kswarm.sim.search``,
    ``scoring``), but never the simulated model server or aiohttp's web server."""
    assert under(loaded_after("kswarm.workflows.worker"), SIMULATOR_SERVER) == []


def test_the_probe_sees_a_module_that_loads_the_simulated_server() -> None:
    """The check above can fail: the simulator's serving module does load them."""
    loaded = under(loaded_after("kswarm.sim.serving"), SIMULATOR_SERVER)
    assert {"aiohttp.web", "kswarm.sim.server", "kswarm.sim.engine"} <= set(loaded)
