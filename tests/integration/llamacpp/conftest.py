"""One real llama.cpp server for the session: SmolLM2-135M on CPU, from the test's own wheels.

Started through ``kswarm llamacpp`` (the command a laptop user runs), on a free port; the
tests read its figures from its own ``/metrics`` and ``/props``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kswarm.devserver import free_port
from kswarm.llm.llamacpp import LlamaCppSettings, llamacpp_server


@pytest.fixture(scope="session")
async def llamacpp_url() -> AsyncIterator[str]:
    settings = LlamaCppSettings(port=free_port(), ctx_size=8192, parallel=4, threads=2)
    async with llamacpp_server(settings, health_timeout=180) as url:
        yield url
