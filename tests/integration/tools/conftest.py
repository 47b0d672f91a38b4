"""Real MCP servers for the tool tests, none of them written here but ``ledger_server.py``.

* ``mcp-server-time`` and ``mcp-server-git`` (PyPI, the ``dev`` extra) over stdio;
* ``@modelcontextprotocol/server-everything`` (npm) over streamable HTTP: installed by the first
  test that needs it into ``KSWARM_TEST_NPM_CACHE`` (default ``~/.cache/kswarm-tests/npm``),
  outside the repository, and run with this machine's Node;
* ``ledger_server.py``: a small server of ours that journals each call's idempotency key, so a
  test can count what a server with side effects sees.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp_support import free_port

EVERYTHING = "@modelcontextprotocol/server-everything"


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repository with one commit, made by git itself."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "README"], ["commit", "-qm", "first"]):
        if args[0] == "add":
            (repo / "README").write_text("hello\n")
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo


@pytest.fixture(scope="session")
def everything_js() -> Path:
    """The server-everything entry point, installed from the npm registry on first use."""
    cache = Path(
        os.environ.get("KSWARM_TEST_NPM_CACHE") or Path.home() / ".cache" / "kswarm-tests" / "npm"
    )
    entry = cache / "node_modules" / EVERYTHING / "dist" / "index.js"
    if not entry.exists():
        cache.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        assert npm, "npm (Node 20) is needed to install server-everything"
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), EVERYTHING],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return entry


@pytest.fixture
async def everything_url(everything_js: Path) -> AsyncIterator[str]:
    """server-everything over streamable HTTP on a free port, stopped after the test."""
    port = free_port()
    proc = subprocess.Popen(
        ["node", str(everything_js), "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(300):  # until it listens (15 s at most)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def kswarm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("KSWARM_HOME", str(home))
    monkeypatch.delenv("KSWARM_DATABASE_URL", raising=False)
    yield home
