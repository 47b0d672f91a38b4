"""Figures a llama.cpp server reports about itself, for checking the ledger against them."""

from __future__ import annotations

import re

import httpx

__all__ = ["server_counter"]


async def server_counter(url: str, name: str) -> float:
    """A counter of the server's ``/metrics`` (e.g. ``llamacpp:tokens_predicted_total``)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics", timeout=10)).text
    found = re.search(rf"^{re.escape(name)}\s+([0-9.e+]+)$", text, re.M)
    assert found, f"{name} is not in the server's /metrics:\n{text[:2000]}"
    return float(found.group(1))
