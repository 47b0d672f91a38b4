"""Token ids recorded per model call and exported token-level, on a real run.

The pool asks for token ids (``returnTokenIds``); the simulator answers them as vLLM's
``return_token_ids`` and ``logprobs`` do, with a stand-in tokenizer whose one property is the
one a chat template has: a conversation's ids only grow at the end.
"""

from __future__ import annotations

import pytest
from engine_support import StackFactory, example

from kswarm.errors import ConfigError, KswarmError
from kswarm.llm.pools import load_pools, pool_entry
from kswarm.rollouts.token_records import agent_records, job_records

QUICK = example("quickstart")


async def test_each_agent_is_one_sequence_masking_tool_tokens_out(
    make_stack: StackFactory,
) -> None:
    async with make_stack(pool_options={"return_token_ids": True}) as stack:
        inp = stack.job(QUICK)
        result = await stack.run(inp)
        await stack.ledger.flush()
        job = await stack.ledger.get_job(inp.uid)
        calls = [c for c in await stack.ledger.list_model_calls(inp.uid) if c.status == "ok"]
        assert job is not None
        records = await job_records(stack.ledger, job)
    assert result.phase == "Succeeded", result.reason
    assert all(c.completion_token_ids and c.prompt_token_ids for c in calls)
    assert all(len(c.logprobs or []) == len(c.completion_token_ids or []) for c in calls)
    # One line per agent (no re-rendering): the orchestrator first, then its 4 sub-agents.
    assert [r["role"] for r in records] == ["orchestrator"] + ["subagent"] * 4
    assert {r["segment"] for r in records} == {0}
    for r in records:
        mine = sorted((c for c in calls if c.agent_id == r["agent_id"]), key=lambda c: c.step)
        generated = [t for c in mine for t in c.completion_token_ids or []]
        assert r["prompt_token_ids"] == mine[0].prompt_token_ids
        assert len(r["response_token_ids"]) == len(r["loss_mask"]) == len(r["logprobs"])
        # The masked-in tokens are exactly what the model generated, in order.
        kept = [t for t, m in zip(r["response_token_ids"], r["loss_mask"], strict=True) if m]
        assert kept == generated
        # Prompt and response rebuild the last call's full context.
        last = mine[-1]
        assert r["prompt_token_ids"] + r["response_token_ids"] == (
            (last.prompt_token_ids or []) + (last.completion_token_ids or [])
        )
        if len(mine) > 1:
            assert 0 in r["loss_mask"]  # tool results between the calls are masked out
        assert r["task_id"] == inp.uid and r["reward"] is None  # a plain run, not a rollout


def test_a_re_rendered_prompt_starts_a_new_segment() -> None:
    from types import SimpleNamespace

    calls = [
        SimpleNamespace(step=1, prompt_token_ids=[1, 2], completion_token_ids=[3], logprobs=[-0.5]),
        SimpleNamespace(
            step=2, prompt_token_ids=[1, 2, 3, 4], completion_token_ids=[5], logprobs=None
        ),
        SimpleNamespace(
            step=3, prompt_token_ids=[9, 2, 3], completion_token_ids=[6], logprobs=[-0.1]
        ),
    ]
    first, second = agent_records(calls)  # type: ignore[arg-type]
    assert first["response_token_ids"] == [3, 4, 5] and first["loss_mask"] == [1, 0, 1]
    assert first["logprobs"] == [-0.5, 0.0, 0.0]
    assert second["segment"] == 1 and second["prompt_token_ids"] == [9, 2, 3]
    assert second["response_token_ids"] == [6] and second["loss_mask"] == [1]


async def test_a_job_without_token_ids_is_refused_by_name(make_stack: StackFactory) -> None:
    async with make_stack() as stack:
        inp = stack.job(QUICK)
        await stack.run(inp)
        await stack.ledger.flush()
        job = await stack.ledger.get_job(inp.uid)
        assert job is not None
        with pytest.raises(KswarmError, match="returnTokenIds") as e:
            await job_records(stack.ledger, job)
    assert inp.uid in str(e.value)


def test_a_pool_asks_for_token_ids_only_when_told_and_refuses_a_non_boolean() -> None:
    doc = {"pools": [{"name": "p", "model": "m", "replicas": ["http://x"]}]}
    assert not load_pools(doc).get("p").return_token_ids
    doc["pools"][0]["returnTokenIds"] = True
    registry = load_pools(doc)
    assert registry.get("p").return_token_ids
    assert pool_entry(registry.get("p"))["returnTokenIds"] is True
    doc["pools"][0]["returnTokenIds"] = "yes"
    with pytest.raises(ConfigError, match=r"pools\[0\]\.returnTokenIds: must be true or false"):
        load_pools(doc)
