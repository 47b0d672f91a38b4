"""Context management on a long job: deep research on the simulator with a small window.

The orchestrator of a deep-research job gathers one hop of the chain per stage, so its
conversation outgrows a 3,700-token window near the end; its sub-agents stay under it. The same
job fails without context management and succeeds with it, and the ledger keeps every message
whole either way.
"""

from __future__ import annotations

from engine_support import FAST, StackFactory, example

from kswarm.sim.config import SimConfig

DEEP = example("deep-research")
WINDOW = 3700


async def test_deep_research_in_a_small_window_fails_without_context_management(
    make_stack: StackFactory,
) -> None:
    async with make_stack(sim=SimConfig(time_scale=FAST, max_model_len=WINDOW)) as stack:
        inp = stack.job(DEEP, context__enabled=False)
        result = await stack.run(inp)
    assert result.phase == "Failed"
    assert "ContextLengthExceeded" in str(result.reason)
    assert f"maximum context length is {WINDOW} tokens" in str(result.reason)
    assert "spec.context.enabled is false" in str(result.reason)
    assert (result.context_masked, result.context_dropped) == (0, 0)


async def test_deep_research_in_a_small_window_succeeds_with_context_management(
    make_stack: StackFactory,
) -> None:
    async with make_stack(sim=SimConfig(time_scale=FAST, max_model_len=WINDOW)) as stack:
        inp = stack.job(DEEP, context__threshold=0.95)
        result = await stack.run(inp)
        calls = await stack.ledger.list_model_calls(inp.uid)
        agents = await stack.ledger.list_agents(inp.uid)
        orchestrator = next(a for a in agents if a.role == "orchestrator")
        kept = await stack.ledger.get_messages(orchestrator.id)
    assert (result.phase, result.reason) == ("Succeeded", None)
    assert result.context_dropped > 0
    assert all(c.status == "ok" and c.input_tokens <= WINDOW for c in calls)
    # The ledger has every step of the orchestrator, none of the cuts.
    steps = [m for m in kept if m.get("role") == "assistant"]
    assert len(steps) == result.stages[-1].stage
    assert not any("to save context" in str(m.get("content")) for m in kept)
