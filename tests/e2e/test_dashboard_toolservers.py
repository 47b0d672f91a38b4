"""The dashboard's Tool servers page shows the operator's view of each ToolServer (Ready, why,
its tools) read from the cluster: a real ``mcp-server-time`` over stdio that the operator lists,
and a server it cannot reach."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from operator_support import apply, conditions, get, wait_for
from streamlit.testing.v1 import AppTest

from kswarm.devserver import free_port
from kswarm.ledger import migrating

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")


def toolserver(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ToolServer",
        "metadata": {"name": name},
        "spec": spec,
    }


def ready(cp: ControlPlane, name: str, namespace: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cond = conditions(get(cp, "ts", name, namespace)).get("Ready")
        return cond if cond and cond["status"] == status else None

    return wait_for(f"ts/{name} Ready={status}", probe, timeout=40)


def test_the_tool_servers_page_shows_each_servers_ready_and_tools_from_the_cluster(
    control_plane: ControlPlane,
    kswarm_operator: OperatorProcess,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import streamlit as st

    suffix = uuid.uuid4().hex[:6]
    good, down = f"time{suffix}", f"down{suffix}"
    apply(control_plane, toolserver(good, command=TIME_SERVER), namespace)
    apply(control_plane, toolserver(down, url=f"http://127.0.0.1:{free_port()}/mcp"), namespace)
    ready(control_plane, good, namespace, "True")
    ready(control_plane, down, namespace, "False")

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrating.upgrade(url)
    monkeypatch.setenv("KSWARM_DATABASE_URL", url)
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/toolservers.py").run()
    assert not at.exception, [e.message for e in at.exception]
    assert "ToolServers in the cluster" in [h.value for h in at.subheader]
    table = next(df.value for df in at.dataframe if "ready" in df.value.columns)
    rows = {r["server"]: r for r in table.to_dict("records") if r["namespace"] == namespace}
    assert set(rows) == {good, down}
    assert rows[good]["ready"] == "True" and rows[good]["tools"] == 2
    assert set(rows[good]["tool names"].split(", ")) == {
        f"{good}__get_current_time",
        f"{good}__convert_time",
    }
    assert rows[down]["ready"] == "False" and rows[down]["reason"] == "Unreachable"
    assert down in str(rows[down]["message"])
