"""The critical path of real jobs, from their exported spans and from the ledger, equals the
engine's ``criticalSteps``; ``kswarm trace`` prints it."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from telemetry_support import example, traced_stack

from kswarm import telemetry
from kswarm.devserver import DevServer
from kswarm.telemetry import commands, ledger_spans, spans
from kswarm.telemetry.critical_path import critical_path
from kswarm.telemetry.receiving import OtlpReceiver
from kswarm.telemetry.spans import SpanRecord


def _job_spans(receiver: OtlpReceiver, uid: str, chats: int) -> list[SpanRecord]:
    telemetry.force_flush()
    receiver.wait_for(
        lambda all_spans: (
            sum(s.operation == "chat" and s.attributes.get(spans.JOB_UID) == uid for s in all_spans)
            >= chats
        ),
        timeout=20,
    )
    return receiver.spans_of_job(uid)


@pytest.mark.parametrize(
    ("job", "changes"),
    [
        pytest.param("quickstart", {}, id="swarm"),
        pytest.param("quickstart", {"mode": "single"}, id="single"),
        pytest.param("deep-research", {}, id="deep-research"),
    ],
)
async def test_critical_steps_from_spans_and_from_the_ledger_equal_the_engines(
    temporal: DevServer,
    receiver: OtlpReceiver,
    tmp_path: Path,
    job: str,
    changes: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    async with traced_stack(temporal.address, tmp_path, ledger_url=url) as stack:
        inp = stack.job(example(job), **changes)
        result = await stack.run(inp)
        await stack.ledger.flush()
        counters = await stack.ledger.job_counters(inp.uid)
        _, from_ledger = await ledger_spans.load_job_records(stack.ledger, inp.uid)
    assert result.phase == "Succeeded", result.reason
    exported = _job_spans(receiver, inp.uid, counters.llm_calls)

    by_spans = critical_path(exported, inp.uid)
    by_ledger = critical_path(from_ledger, inp.uid)
    for path in (by_spans, by_ledger):
        assert path.steps == result.critical_steps
        assert path.total_steps == result.total_steps
        assert [(s.stage, s.main_steps, s.subagent_steps, s.subagents) for s in path.stages] == [
            (s.stage, s.main_steps, s.max_subagent_steps, s.subagents) for s in result.stages
        ]
        assert 0 < path.step_path_seconds <= path.seconds <= path.wall_seconds + 1e-6
    # The path in steps visits one model step per critical step, in stage order.
    assert len(by_spans.nodes) == result.critical_steps
    assert [n.stage for n in by_spans.nodes] == sorted(n.stage for n in by_spans.nodes)

    # kswarm trace, from the ledger and from a spans file the receiver could have written.
    spans_file = tmp_path / "spans.jsonl"
    spans.write_jsonl(exported, spans_file)
    for extra in ({}, {"spans": str(spans_file)}):
        ns = argparse.Namespace(job=inp.uid, url=url, json=True, spans=None)
        vars(ns).update(extra)
        assert await asyncio.to_thread(commands.main_trace, ns) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["criticalSteps"] == printed["ledgerCriticalSteps"] == result.critical_steps
    ns = argparse.Namespace(job=inp.name, url=url, json=False, spans=None)
    assert await asyncio.to_thread(commands.main_trace, ns) == 0
    text = capsys.readouterr().out
    assert f"criticalSteps {result.critical_steps}: agrees" in text


def test_trace_of_an_unknown_job_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kswarm.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(_migrate(Ledger, url))
    ns = argparse.Namespace(job="nope", url=url, json=False, spans=None)
    assert commands.main_trace(ns) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no job 'nope'" in err


async def _migrate(ledger_cls: type, url: str) -> None:
    ledger = await ledger_cls.connect(url, migrate=True)
    await ledger.close()
