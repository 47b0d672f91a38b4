"""A real headless Chromium, driven over the DevTools protocol, for the dashboard's browser test.

``chromium --screenshot`` shoots when the document has loaded, but a Streamlit page is drawn
afterwards, over its websocket; so the browser is started with a debugging port and asked,
until the page shows what we wait for, for its text; then for a screenshot and the DOM.

    python tests/integration/dashboard/browsing.py URL OUT.png [TEXT] [WIDTHxHEIGHT]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]


@dataclass
class Page:
    png: bytes
    dom: str
    text: str


class Browser:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        await self._ws.send_json({"id": self._next, "method": method, "params": params})
        while True:
            msg = json.loads((await self._ws.receive(timeout=30)).data)
            if msg.get("id") == self._next:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result") or {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def load(self, url: str, wait_for: str, *, charts: int = 0, within: float = 45.0) -> Page:
        """Open ``url``; once its text shows ``wait_for``, ``charts`` plotly charts are drawn and
        no script run is in progress, return its screenshot, DOM and text."""
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + within
        ready = (
            "(() => { const t = document.body ? document.body.innerText : '';"
            f" return t.includes({json.dumps(wait_for)})"
            " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
            " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
            f" && document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts}; }})()"
        )
        settled = 0
        while settled < 3:  # ready three polls in a row: not between two reruns
            settled = settled + 1 if await self.evaluate(ready) else 0
            if time.monotonic() > deadline:
                text = await self.evaluate("document.body ? document.body.innerText : ''")
                raise TimeoutError(f"{url}: {wait_for!r} not shown in {within:g}s: {text[:500]!r}")
            await asyncio.sleep(0.2)
        shot = await self.call("Page.captureScreenshot", format="png")
        return Page(
            png=base64.b64decode(shot["data"]),
            dom=str(await self.evaluate("document.documentElement.outerHTML")),
            text=str(await self.evaluate("document.body.innerText")),
        )


@contextlib.asynccontextmanager
async def chromium(width: int = 1400, height: int = 1000) -> AsyncIterator[Browser]:
    profile = Path(tempfile.mkdtemp(prefix="kswarm-chromium-"))
    proc = subprocess.Popen(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t.get("type") == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                browser = Browser(ws)
                await browser.call("Page.enable")
                await browser.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield browser
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


async def _main(url: str, out: str, text: str, size: str) -> None:
    width, height = (int(v) for v in size.split("x"))
    async with chromium(width, height) as browser:
        page = await browser.load(url, text, charts=1)
    Path(out).write_bytes(page.png)
    print(f"wrote {out} ({len(page.png)} bytes)")


if __name__ == "__main__":
    args = sys.argv[1:]
    text = args[2] if len(args) > 2 else ""
    asyncio.run(_main(args[0], args[1], text, args[3] if len(args) > 3 else "1400x1000"))
