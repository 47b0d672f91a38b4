"""The built-in ``search`` tool: BM25 full-text search (SQLite FTS5) over the local corpus."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kswarm.sim.corpus import Corpus, default_corpus
from kswarm.tools.registry import Tool, ToolContext

__all__ = ["CorpusIndex", "search_tool"]

_WORD = re.compile(r"[A-Za-z0-9]+")
MAX_RESULTS = 10


class CorpusIndex:
    """An in-memory FTS5 index of a corpus; building it takes milliseconds."""

    def __init__(self, corpus: Corpus) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, text)")
        self._db.executemany(
            "INSERT INTO docs (id, title, text) VALUES (?, ?, ?)",
            [(d.id, d.title, d.text) for d in corpus.documents],
        )
        self._db.commit()

    def search(self, query: str, k: int = 5) -> list[dict[str, str]]:
        words = _WORD.findall(query.lower())
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, text FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?",
                (match, max(1, min(k, MAX_RESULTS))),
            ).fetchall()
        return [{"id": r[0], "title": r[1], "text": r[2]} for r in rows]


_index: CorpusIndex | None = None
_index_lock = threading.Lock()
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kswarm-search")
"""Queries run here, off the event loop: SQLite releases the GIL while it searches, so a
swarm's searches overlap with the worker's own work instead of stalling it."""


def _default_index() -> CorpusIndex:
    global _index
    with _index_lock:
        if _index is None:
            _index = CorpusIndex(default_corpus())
        return _index


async def _search(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    query, k = str(args["query"]), int(args.get("k", 3))
    loop = asyncio.get_running_loop()
    results = await loop.run_in_executor(_executor, lambda: _default_index().search(query, k))
    return {"query": args["query"], "results": results}


search_tool = Tool(
    name="search",
    description=(
        "Full-text search over the research corpus of company documents. Returns the best "
        "matching documents (id, title, text)."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words to look for."},
            "k": {
                "type": "integer",
                "description": "How many documents to return.",
                "minimum": 1,
                "maximum": MAX_RESULTS,
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    fn=_search,
)
