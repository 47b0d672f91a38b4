"""Helpers for the engine tests: a real swarm stack per test, with the Temporal dev server (one
per session), a simulated pool on loopback, a ledger (SQLite, or the session's PostgreSQL), and
a worker in this process.

Each test gets its own task queue and its own pool name, so no test ever sees another's work.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from kswarm.ledger import Ledger
from kswarm.spec import parse_manifest
from kswarm.workflows import SwarmJobInput, SwarmJobResult, SwarmWorkflow
from kswarm.workflows.activities import SwarmActivities

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
FAST = 0.002
"""Simulator time scale for tests: 500x a real GPU's pace."""


@dataclass
class Stack:
    client: Client
    ledger: Ledger
    task_queue: str
    pool: str
    sims: list[Any]
    activities: SwarmActivities

    def job(self, manifest: dict[str, Any], **spec_changes: Any) -> SwarmJobInput:
        m = copy.deepcopy(manifest)
        m.setdefault("metadata", {})["uid"] = uuid.uuid4().hex[:12]
        spec = m["spec"]
        spec.setdefault("orchestrator", {})["pool"] = self.pool
        spec.setdefault("subagents", {})["pool"] = self.pool
        for path, value in spec_changes.items():
            node = spec
            *parents, leaf = path.split("__")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        parsed = parse_manifest(m)
        return SwarmJobInput(
            name=parsed.name, namespace=parsed.namespace, uid=parsed.uid, spec=parsed.spec
        )

    async def start(self, inp: SwarmJobInput) -> WorkflowHandle[Any, SwarmJobResult]:
        return await self.client.start_workflow(
            SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=self.task_queue
        )

    async def run(self, inp: SwarmJobInput) -> SwarmJobResult:
        return await (await self.start(inp)).result()


StackFactory = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


def example(name: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))
