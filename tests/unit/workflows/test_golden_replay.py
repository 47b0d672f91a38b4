"""Running workflows survive a worker upgrade: every golden history replays on today's code.

The histories under ``tests/golden/`` were recorded from the examples by
``hack/record_golden.py`` on earlier releases of the workflow code. A change to
``SwarmWorkflow`` or ``SubagentWorkflow`` that would make a running job fail after an upgrade
(a new activity, a reordered command) fails here; such a change goes behind
``workflow.patched(...)``. The replay runs in Temporal's workflow sandbox, which also catches
non-deterministic calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm.converter import data_converter
from kswarm.workflows import SubagentWorkflow, SwarmWorkflow

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
HISTORIES = sorted(GOLDEN.glob("*/*.json"))


def _replayer() -> Replayer:
    return Replayer(
        workflows=[SwarmWorkflow, SubagentWorkflow],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules("kswarm")
        ),
        data_converter=data_converter(),
    )


def test_golden_histories_are_checked_in() -> None:
    releases = {p.parent.name for p in HISTORIES}
    assert "v0.1" in releases, f"no golden histories under {GOLDEN}"
    kinds = {p.name.count("__") for p in HISTORIES}
    assert kinds == {0, 1}, "both orchestrator and sub-agent histories must be there"


@pytest.fixture(scope="module")
async def replay_failures() -> dict[str, str]:
    """Replay every golden history once (one replayer: the sandbox is built once)."""
    histories = [
        WorkflowHistory.from_json(p.stem.replace("__", "/"), p.read_text()) for p in HISTORIES
    ]

    async def each() -> AsyncIterator[WorkflowHistory]:
        for h in histories:
            yield h

    results = await _replayer().replay_workflows(each(), raise_on_replay_failure=False)
    return {wid: str(failure) for wid, failure in results.replay_failures.items()}


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
def test_a_golden_history_replays_on_the_current_code(
    path: Path, replay_failures: dict[str, str]
) -> None:
    workflow_id = path.stem.replace("__", "/")
    assert workflow_id not in replay_failures, f"{path.name}: {replay_failures[workflow_id]}"
