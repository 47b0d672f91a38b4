"""``write_note``: a side-effecting tool that appends to a notebook file, once per call key.

It exists to show (and test) exactly-once execution: every effect carries the idempotency key
of its call, so a replay after a worker crash can be detected by counting lines per key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kswarm.tools.registry import Tool, ToolContext

__all__ = ["notes_dir", "write_note_tool"]


def notes_dir() -> Path:
    home = Path(os.environ.get("KSWARM_HOME") or Path.home() / ".kswarm")
    return Path(os.environ.get("KSWARM_NOTES_DIR") or home / "notes")


async def _write_note(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    folder = notes_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ctx.job_uid}.jsonl"
    if ctx.attempt > 1 and path.exists():
        # A retried call (its worker died after the effect): deduplicate by the key.
        with path.open(encoding="utf-8") as fh:
            if any(json.loads(line).get("key") == ctx.key for line in fh if line.strip()):
                return {"written": False, "key": ctx.key, "duplicate": True}
    line = json.dumps({"key": ctx.key, "attempt": ctx.attempt, "text": str(args["text"])})
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return {"written": True, "key": ctx.key}


write_note_tool = Tool(
    name="write_note",
    description="Append a note to the job's notebook (a side effect: runs once per call).",
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The note."}},
        "required": ["text"],
        "additionalProperties": False,
    },
    fn=_write_note,
    side_effects=True,
)
