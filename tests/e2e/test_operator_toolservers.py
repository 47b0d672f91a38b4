"""ToolServers: the API server refuses bad ones, the operator reaches good ones, lists their tools
into the status, says why it cannot reach the others, and hands them to the workers through the
ConfigMap kswarm-tools.

The MCP server is ``tests/integration/tools/ledger_server.py`` over streamable HTTP on this
machine, where the operator (a subprocess) reaches it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from operator_support import OPERATOR_NAMESPACE, apply, conditions, get, wait_for

from kswarm.devserver import free_port

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

API = "kswarm.dev/v1alpha1"
LEDGER_SERVER = Path(__file__).resolve().parents[1] / "integration" / "tools" / "ledger_server.py"


def toolserver(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ToolServer", "metadata": {"name": name}, "spec": spec}


def unique(prefix: str) -> str:
    """ToolServer names are taken once per cluster (their tools are NAME__TOOL)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


class HttpServer:
    def __init__(self, journal: Path, port: int) -> None:
        self.journal, self.port = journal, port
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", str(LEDGER_SERVER), str(self.journal), "http", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the MCP server did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def mcp_server(tmp_path: Path) -> Iterator[HttpServer]:
    server = HttpServer(tmp_path / "journal.jsonl", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ready(cp: ControlPlane, name: str, namespace: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cp, "ts", name, namespace)
        cond = conditions(obj).get("Ready")
        return obj if cond and cond["status"] == status else None

    return wait_for(f"ts/{name} Ready={status}", probe, timeout=40)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {}, "set exactly one of spec.url (streamable HTTP) or spec.command", id="none"
        ),
        pytest.param(
            {"url": "http://x/mcp", "command": "x"}, "set exactly one of spec.url", id="both"
        ),
        pytest.param({"url": "ftp://x"}, "spec.url", id="scheme"),
        pytest.param({"command": "x", "maxConcurrency": 0}, "spec.maxConcurrency", id="bounds"),
    ],
)
def test_the_api_server_refuses_a_bad_toolserver_naming_the_field(
    control_plane: ControlPlane, namespace: str, spec: dict[str, Any], message: str
) -> None:
    done = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=yaml.safe_dump(toolserver("bad", **spec)),
        check=False,
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_a_reachable_server_is_ready_with_its_tools_and_reaches_the_workers(
    control_plane: ControlPlane,
    kswarm_operator: OperatorProcess,
    namespace: str,
    mcp_server: HttpServer,
) -> None:
    name = unique("led")
    apply(control_plane, toolserver(name, url=mcp_server.url, maxConcurrency=4), namespace)
    obj = ready(control_plane, name, namespace, "True")
    status = obj["status"]
    assert status["phase"] == "Ready" and status["toolCount"] == 5
    tools = {t["name"]: t for t in status["tools"]}
    assert set(tools) == {f"{name}__{t}" for t in ("append", "read", "slow", "big", "grow")}
    assert tools[f"{name}__read"]["sideEffects"] is False
    assert tools[f"{name}__append"]["sideEffects"] is True
    printed = control_plane.kubectl("get", "ts", name, "-n", namespace).stdout
    assert printed.split("\n")[0].split()[:4] == ["NAME", "READY", "TOOLS", "AGE"]
    assert printed.split("\n")[1].split()[:3] == [name, "True", "5"]

    def published() -> dict[str, Any] | None:
        data = control_plane.kubectl(
            "get",
            "configmap",
            "kswarm-tools",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "json",
            check=False,
        )
        if data.returncode != 0:
            return None
        doc = yaml.safe_load(json.loads(data.stdout)["data"]["tools.yaml"])
        return next((s for s in doc["servers"] if s["name"] == name), None)

    entry = wait_for("the server in kswarm-tools", published, timeout=30)
    assert entry["url"] == mcp_server.url and entry["maxConcurrency"] == 4


def test_an_unreachable_server_says_why_and_becomes_ready_when_it_answers(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    name = unique("late")
    server = HttpServer(tmp_path / "journal.jsonl", free_port())
    apply(control_plane, toolserver(name, url=server.url, timeoutSeconds=2), namespace)
    obj = ready(control_plane, name, namespace, "False")
    cond = conditions(obj)["Ready"]
    assert cond["reason"] == "Unreachable"
    assert f"tool server {name!r} is unavailable" in cond["message"]
    assert obj["status"]["phase"] == "Unreachable" and obj["status"]["toolCount"] == 0
    server.start()
    try:
        obj = ready(control_plane, name, namespace, "True")
    finally:
        server.stop()
    assert obj["status"]["toolCount"] == 5


def test_a_second_server_of_the_same_name_reports_the_conflict(
    control_plane: ControlPlane,
    kswarm_operator: OperatorProcess,
    namespace: str,
    mcp_server: HttpServer,
) -> None:
    name = unique("dup")
    apply(control_plane, toolserver(name, url=mcp_server.url), namespace)
    ready(control_plane, name, namespace, "True")
    other = f"{namespace}-b"
    control_plane.kubectl("create", "namespace", other)
    apply(control_plane, toolserver(name, url=mcp_server.url), other)
    obj = ready(control_plane, name, other, "False")
    cond = conditions(obj)["Ready"]
    assert cond["reason"] == "NameConflict"
    assert f"{namespace}/{name}" in cond["message"]


def test_a_job_naming_a_missing_server_waits_and_starts_once_the_server_is_ready(
    control_plane: ControlPlane,
    kswarm_operator: OperatorProcess,
    namespace: str,
    mcp_server: HttpServer,
) -> None:
    name = unique("wait")
    job = {
        "apiVersion": API,
        "kind": "SwarmJob",
        "metadata": {"name": "needs-tools"},
        "spec": {"task": "Read the journal.", "tools": [f"{name}__read"]},
    }
    apply(control_plane, job, namespace)

    def waiting() -> dict[str, Any] | None:
        obj = get(control_plane, "sj", "needs-tools", namespace)
        return obj if obj.get("status", {}).get("reason") == "ToolServerNotFound" else None

    sj = wait_for("the job waiting for its tool server", waiting, timeout=30)
    assert sj["status"]["phase"] == "Pending"
    accepted = conditions(sj)["Accepted"]
    assert accepted["status"] == "False" and repr(name) in accepted["message"]

    apply(control_plane, toolserver(name, url=mcp_server.url), namespace)
    ready(control_plane, name, namespace, "True")

    def accepted_now() -> dict[str, Any] | None:
        obj = get(control_plane, "sj", "needs-tools", namespace)
        return obj if obj.get("status", {}).get("reason") != "ToolServerNotFound" else None

    sj = wait_for("the job accepted once the server is Ready", accepted_now, timeout=60)
    assert conditions(sj)["Accepted"]["reason"] == "Validated", sj["status"]
    assert sj["status"]["phase"] != "Pending"
