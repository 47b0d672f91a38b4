"""Pruning old jobs, exporting trajectories, and the ``kswarm db``/``export`` commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from kswarm.errors import LedgerError, SpecError
from kswarm.ledger import (
    AgentRecord,
    Ledger,
    ModelCallRecord,
    StageRecord,
    ToolCallKey,
    commands,
    migrating,
    retention,
)
from kswarm.ledger.repository import utcnow


async def fill_job(ledger: Ledger, uid: str) -> None:
    """A small finished swarm: orchestrator + two sub-agents, with every kind of row."""
    await ledger.upsert_job(uid=uid, namespace="tests", name=f"name-{uid}", mode="swarm", spec={})
    main, subs = f"{uid}/main", [f"{uid}/sub-{i}" for i in range(2)]
    await ledger.upsert_agents(
        [AgentRecord(id=main, job_uid=uid, role="orchestrator", name="main", task="t")]
        + [
            AgentRecord(
                id=s, job_uid=uid, role="subagent", name=s[-5:], task="t", parent_id=main, stage=1
            )
            for s in subs
        ]
    )
    await ledger.record_stage(
        uid, StageRecord(index=1, main_steps=1, max_subagent_steps=2, subagents=2)
    )
    for n, agent_id in enumerate([main, *subs]):
        await ledger.append_messages(
            uid,
            agent_id,
            0,
            [{"role": "user", "content": f"go {n}"}, {"role": "assistant", "content": "ok"}],
        )
        k = ToolCallKey(uid, agent_id, 1, 0)
        await ledger.begin_tool_call(
            k, tool="web__search", arguments={"q": n}, side_effects=False, server="web"
        )
        await ledger.finish_tool_call(k, status="succeeded", result=[n], duration_seconds=0.5)
        for attempt in (1, 2):
            ledger.record_model_call(
                ModelCallRecord(
                    job_uid=uid,
                    agent_id=agent_id,
                    step=1,
                    attempt=attempt,
                    pool="sim",
                    model="m",
                    status="ok" if attempt == 2 else "http_503",
                    input_tokens=10 * attempt,
                    output_tokens=attempt,
                    started_at=time.time(),
                )
            )
        await ledger.update_agent(
            agent_id, status="Succeeded", steps=1, answer=f"answer {n}", finished_at=utcnow()
        )
    await ledger.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30d", timedelta(days=30), id="days"),
        pytest.param("12h", timedelta(hours=12), id="hours"),
        pytest.param("90m", timedelta(minutes=90), id="minutes"),
        pytest.param(" 45s ", timedelta(seconds=45), id="seconds"),
    ],
)
def test_parse_age_reads_whole_units(text: str, expected: timedelta) -> None:
    assert retention.parse_age(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("30", id="no-unit"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("-1d", id="negative"),
        pytest.param("3w", id="weeks"),
    ],
)
def test_parse_age_names_the_bad_value(text: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"--older-than: not a duration: {text!r}")):
        retention.parse_age(text)


async def test_prune_deletes_old_finished_jobs_with_all_their_rows(ledger: Ledger) -> None:
    old, recent, running = (f"prune-{n}-{uuid.uuid4().hex[:8]}" for n in ("old", "new", "run"))
    for uid in (old, recent, running):
        await fill_job(ledger, uid)
    await ledger.finish_job(old, phase="Succeeded", finished_at=utcnow() - timedelta(days=40))
    await ledger.finish_job(recent, phase="Succeeded", finished_at=utcnow() - timedelta(days=2))

    deleted = await retention.prune(ledger, timedelta(days=30))

    assert deleted == 1
    assert await ledger.get_job(old) is None
    assert await ledger.list_agents(old) == []
    assert await ledger.list_stages(old) == []
    assert await ledger.list_tool_calls(old) == []
    assert await ledger.list_model_calls(old) == []
    assert await ledger.get_messages(f"{old}/main") == []
    for kept in (recent, running):
        assert await ledger.get_job(kept) is not None
        assert len(await ledger.list_tool_calls(kept)) == 3


async def test_export_gives_one_json_record_per_agent_orchestrator_first(ledger: Ledger) -> None:
    uid = f"export-{uuid.uuid4().hex[:8]}"
    await fill_job(ledger, uid)

    records = [r async for r in retention.export_trajectories(ledger, uid)]

    assert [r["agent"]["name"] for r in records] == ["main", "sub-0", "sub-1"]
    first = json.loads(json.dumps(records[0]))
    assert first == records[0]
    assert first["job"]["uid"] == uid and first["job"]["mode"] == "swarm"
    assert first["agent"]["answer"] == "answer 0"
    assert [m["content"] for m in first["messages"]] == ["go 0", "ok"]
    (tool_call,) = first["tool_calls"]
    assert tool_call["result"] == [0] and tool_call["attempts"] == 1
    assert (tool_call["server"], tool_call["side_effects"]) == ("web", False)
    assert tool_call["approval"] is None
    assert [(c["attempt"], c["status"]) for c in first["model_calls"]] == [
        (1, "http_503"),
        (2, "ok"),
    ]
    assert first["tokens"] == {"input": 30, "output": 3}
    assert first["timings"]["started_at"].endswith("+00:00")


async def test_export_of_an_unknown_job_names_it(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no-such-job"):
        [r async for r in retention.export_trajectories(ledger, "no-such-job")]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="kswarm")
    commands.register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    return int(ns.func(ns))


def test_db_commands_upgrade_report_and_check(
    empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("db", "current", "--url", empty_database_url) == 0
    assert run_cli("db", "upgrade", "--url", empty_database_url) == 0
    assert run_cli("db", "check", "--url", empty_database_url) == 0
    assert run_cli("db", "current", "--url", empty_database_url) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "base"
    assert out[-1] == migrating.head()


async def test_export_command_writes_jsonl_for_a_job_named_by_namespace_and_name(
    ledger: Ledger, tmp_path: Path
) -> None:
    uid = f"cli-{uuid.uuid4().hex[:8]}"
    await fill_job(ledger, uid)
    target = tmp_path / "out.jsonl"

    code = await asyncio.to_thread(
        run_cli, "export", f"tests/name-{uid}", "--output", str(target), "--url", ledger.url
    )

    assert code == 0
    lines = target.read_text().splitlines()
    assert [json.loads(line)["agent"]["name"] for line in lines] == ["main", "sub-0", "sub-1"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["db", "prune", "--older-than", "soon"], id="bad-age"),
        pytest.param(["export", "no-such-job"], id="unknown-job"),
    ],
)
def test_commands_refuse_bad_input_with_one_line_and_exit_2(
    database_url: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(*argv, "--url", database_url) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kswarm: error:")
