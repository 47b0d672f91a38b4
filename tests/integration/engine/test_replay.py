"""Replay: recorded histories of a real swarm job replay without non-determinism errors."""

from __future__ import annotations

from engine_support import StackFactory, example
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kswarm.workflows import SubagentWorkflow, SwarmWorkflow

# Replayed in Temporal's sandbox, which catches non-deterministic calls the worker (which runs
# without it by default) would not.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("kswarm")
)


async def test_recorded_histories_of_orchestrator_and_subagents_replay(
    make_stack: StackFactory,
) -> None:
    async with make_stack() as stack:
        inp = stack.job(example("quickstart"))
        handle = await stack.start(inp)
        result = await handle.result()
        assert result.phase == "Succeeded"
        parent = await handle.fetch_history()
        agents = [a for a in await stack.ledger.list_agents(inp.uid) if a.role == "subagent"]
        child = await stack.client.get_workflow_handle(f"swarmjob-{agents[0].id}").fetch_history()
    replayer = Replayer(workflows=[SwarmWorkflow, SubagentWorkflow], workflow_runner=SANDBOX)
    for history in (parent, child):
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure
    # A history of the claim-check design stays small: ids and counters only.
    assert len(parent.events) < 200
    assert sum(e.ByteSize() for e in parent.events) < 200_000
