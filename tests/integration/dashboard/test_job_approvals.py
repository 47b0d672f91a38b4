"""The Job page's Approve and Deny buttons, driven with Streamlit's AppTest against a real job
that waits for approval on the embedded stack (Temporal dev server, simulated pool, the real
``mcp-server-time`` behind a ``requireApproval`` ToolServer): a click sends the decision the way
``kswarm approve``/``kswarm deny`` do, the page shows it, and the job goes on with the decision
in the ledger."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from mcp_behaviours import call_named_tools
from mcp_support import BIN, job_manifest

from kswarm.embedded import SimOptions, embedded_stack
from kswarm.sim import demo_tools
from kswarm.tools.mcp import tool_servers
from kswarm.tools.servers import ToolServerConfig
from kswarm.workflows import SwarmJobInput, SwarmWorkflow

APP = str(Path(__file__).resolve().parents[3] / "dashboard" / "app.py")
UID = "dashapprove"
KEEP, DROP = f"{UID}/single/1/0", f"{UID}/single/1/1"


def job_page() -> AppTest:
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/job.py")
    at.query_params["job"] = UID
    return at.run()


def server_row(server: str) -> dict[str, object]:
    """The Tool servers page's summary row of ``server``."""
    import streamlit as st

    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/toolservers.py").run()
    no_exception(at)
    summary = next(df.value for df in at.dataframe if "error %" in df.value.columns)
    row: dict[str, object] = summary.set_index("server").loc[server].to_dict()
    return row


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def tool_table(at: AppTest) -> dict[str, dict[str, object]]:
    table = next(df.value for df in at.dataframe if "tool" in df.value.columns)
    return {f"{UID}/single/{r['step']}/{r['index']}": r for r in table.to_dict("records")}


async def test_approve_and_deny_on_the_job_page_decide_a_waiting_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KSWARM_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("KSWARM_DATABASE_URL", url)
    monkeypatch.setenv("KSWARM_DASHBOARD_USER", "alice")
    calls = [
        ("time__get_current_time", {"timezone": "UTC"}),
        ("time__get_current_time", {"timezone": "Europe/Paris"}),
    ]
    manifest = job_manifest(UID, calls, ["time__*"], mode="single")
    sim = SimOptions(time_scale=0.005, extra={"behaviour": call_named_tools})
    server = ToolServerConfig(
        name="time", command=str(BIN / "mcp-server-time"), require_approval=("get_current_time",)
    )
    async with tool_servers([server]) as servers:
        tools = servers.register(demo_tools())
        async with embedded_stack(sim=sim, tools=tools, database_url=url) as stack:
            monkeypatch.setenv("KSWARM_TEMPORAL_ADDRESS", stack.server.address)
            inp = SwarmJobInput.from_manifest(manifest)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            for _ in range(400):
                if len(await handle.query("waiting_for_approval")) == 2:
                    break
                await asyncio.sleep(0.05)
            await stack.ledger.flush()

            waiting = await asyncio.to_thread(server_row, "time")
            assert (waiting["calls"], waiting["pending approvals"]) == (2, 2)

            at = await asyncio.to_thread(job_page)
            no_exception(at)
            assert "Waiting for approval" in [h.value for h in at.subheader]
            assert at.text_input(key="job.approvals.by").value == "alice"
            rows = tool_table(at)
            assert {c: (r["status"], r["server"], r["side effects"]) for c, r in rows.items()} == {
                KEEP: ("awaiting", "time", "no"),
                DROP: ("awaiting", "time", "no"),
            }

            # A denial without a reason is refused on the page and sends nothing.
            at.button(key=f"job.approvals.deny.{DROP}").click()
            at = await asyncio.to_thread(at.run)
            no_exception(at)
            assert any("Reason" in e.value for e in at.error)
            assert sorted(await handle.query("waiting_for_approval")) == [KEEP, DROP]

            at.text_input(key=f"job.approvals.reason.{DROP}").set_value("not now")
            at.button(key=f"job.approvals.deny.{DROP}").click()
            at = await asyncio.to_thread(at.run)
            at.button(key=f"job.approvals.approve.{KEEP}").click()
            at = await asyncio.to_thread(at.run)
            no_exception(at)
            said = [s.value for s in at.success]
            assert f"{DROP}: denied by alice: not now" in said
            assert f"{KEEP}: approved by alice" in said
            # Decided calls lose their buttons.
            assert not [b for b in at.button if b.key and b.key.startswith("job.approvals.")]

            result = await handle.result()
            await stack.ledger.flush()
            ledger_rows = {r.key: r for r in await stack.ledger.list_tool_calls(UID)}
    assert result.phase == "Succeeded", result.reason
    keep, drop = ledger_rows[KEEP], ledger_rows[DROP]
    assert keep.status == "succeeded" and keep.result["structuredContent"]["timezone"] == "UTC"
    assert keep.approval["approved"] is True and keep.approval["by"] == "alice"
    assert drop.status == "failed" and drop.error == "denied by alice: not now"
    assert drop.approval == {**drop.approval, "approved": False, "reason": "not now"}

    # A fresh page reads the decisions from the ledger.
    at = await asyncio.to_thread(job_page)
    no_exception(at)
    assert "Waiting for approval" not in [h.value for h in at.subheader]
    rows = tool_table(at)
    assert rows[KEEP]["approval"] == "approved by alice" and rows[KEEP]["status"] == "succeeded"
    assert rows[DROP]["approval"] == "denied by alice: not now"
    decided = await asyncio.to_thread(server_row, "time")
    # A denial is no error of the server's, and the approved call ran.
    assert (decided["pending approvals"], decided["denied"], decided["errors"]) == (0, 1, 0)
