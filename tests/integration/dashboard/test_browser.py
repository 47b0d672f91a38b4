"""The served dashboard, as ``kswarm dashboard`` serves it, loaded page by page in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browsing import CHROMIUM, chromium
from dashboard_support import FilledLedger, McpLedger, free_port
from PIL import Image


@pytest.fixture(scope="module")
def served(filled_ledger: FilledLedger) -> Iterator[str]:
    """``python -m kswarm.dashboard`` on a free loopback port, reading the filled ledger."""
    with _serve(filled_ledger.url) as url:
        yield url


@pytest.fixture(scope="module")
def served_tools(mcp_ledger: McpLedger) -> Iterator[str]:
    """The dashboard reading the ledger of the job that called real MCP servers."""
    with _serve(mcp_ledger.url) as url:
        yield url


@contextlib.contextmanager
def _serve(ledger_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "KSWARM_DATABASE_URL": ledger_url,
        "KSWARM_DASHBOARD_PORT": str(port),
        "KSWARM_DASHBOARD_ADDRESS": "127.0.0.1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "kswarm.dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the dashboard did not start: {proc.stderr and proc.stderr.read()}"
                )
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _colours(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])


async def test_each_page_of_the_served_dashboard_renders_its_data_in_chromium(
    served: str, served_tools: str, filled_ledger: FilledLedger, output_dir: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is needed: apt-get install -y chromium")
    pages = [
        ("overview", "/", "Swarm jobs", 1, ["quickstart", "Succeeded", "Failed"]),
        (
            "job",
            f"/job?job={filled_ledger.swarm}",
            "Timeline",
            1,
            ["quickstart", filled_ledger.swarm, "critical path", "Swarm vs single"],
        ),
        ("pools", "/pools", "Model pools", 3, ["calls/s", "p95 latency"]),
        (
            "toolservers",
            served_tools + "/toolservers",
            "Tool servers",
            2,
            ["Latency by server", "Side-effecting calls", "git__git_reset", "time"],
        ),
    ]
    async with chromium(1400, 1000) as browser:
        for name, path, title, charts, expected in pages:
            url = path if path.startswith("http") else served + path
            page = await browser.load(url, title, charts=charts)
            (output_dir / f"{name}.png").write_bytes(page.png)
            (output_dir / f"{name}.html").write_text(page.dom)
            for text in expected:
                assert text in page.text or text in page.dom, (name, text)
            # app.py's navigation ran: the sidebar names the pages and the live toggle.
            names = ("Overview", "Job", "Pools", "Tool servers", "Live refresh")
            assert all(p in page.text for p in names), name
            assert "Traceback" not in page.text and "Error" not in page.text.split("\n")[:3]
            image = Image.open(io.BytesIO(page.png))
            assert image.size == (1400, 1000)
            assert _colours(page.png) > 200, f"{name}: the screenshot is nearly blank"
    await asyncio.sleep(0)
