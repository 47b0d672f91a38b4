"""Pools whose model server ``kswarm run`` starts itself: ``engine: vllm`` and ``engine: llamacpp``.

vLLM needs a GPU and is not installed on the machines that run these tests, so the ``vllm``
engine is exercised through a stand-in at the one seam that cannot run here: an executable named
``vllm`` on ``PATH`` that records the command line it was given and serves kswarm's simulator on
the ``--host``/``--port`` it was asked for (the simulator speaks vLLM's API, ``/health``
included). Everything else is real: the pools file, the start and the health wait, the job on the
embedded stack through that server, and the stop when the run ends. The ``llamacpp`` engine runs
the real llama.cpp server with the bundled model.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_kswarm_run import KSWARM, kswarm, manifest

from kswarm.ledger import Ledger

SHIM = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
host, port = args[args.index("--host") + 1], args[args.index("--port") + 1]
os.execv({python!r}, [{python!r}, "-P", "-m", "kswarm.cli", "sim", "--host", host,
    "--port", port, "--model", args[1],
    "--time-scale", os.environ.get("FAKE_VLLM_TIME_SCALE", "0.01")])
"""


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def _pools(tmp_path: Path, entry: dict[str, object]) -> str:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": [entry]}))
    return str(path)


async def _replicas_called(home: Path, uid: str) -> set[str]:
    ledger = await Ledger.connect(f"sqlite:///{home / 'ledger.db'}")
    try:
        return {c.replica or "" for c in await ledger.list_model_calls(uid)}
    finally:
        await ledger.close()


def _fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A pools file with one ``engine: vllm`` pool, and the file the stand-in logs to."""
    bin_dir, log = tmp_path / "bin", tmp_path / "vllm-argv.jsonl"
    bin_dir.mkdir()
    shim = bin_dir / "vllm"
    shim.write_text(SHIM.format(python=sys.executable, log=str(log)))
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    entry = {
        "name": "default",
        "model": "Qwen/Qwen3-8B",
        "engine": "vllm",
        "engineArgs": ["--max-model-len", "32768"],
    }
    return _pools(tmp_path, entry), log


def _served(argv: list[str]) -> str:
    return f"http://{argv[argv.index('--host') + 1]}:{argv[argv.index('--port') + 1]}"


async def test_an_engine_vllm_pool_starts_vllm_serve_for_the_run_and_stops_it_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pools, log = _fake_vllm(tmp_path, monkeypatch)

    done = kswarm(tmp_path, "run", manifest(tmp_path), "--pools", pools, "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Succeeded"
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert argv[:2] == ["serve", "Qwen/Qwen3-8B"]
    assert "--enable-prefix-caching" in argv and "--enable-auto-tool-choice" in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "hermes"  # Qwen's family
    assert argv[-2:] == ["--max-model-len", "32768"]  # engineArgs come last
    served = _served(argv)
    assert await _replicas_called(tmp_path, report["uid"]) == {served}
    assert not _listening(served), "the server outlived the run"


async def test_an_engine_llamacpp_pool_runs_a_job_on_a_real_llama_cpp_server(
    tmp_path: Path,
) -> None:
    """The real server with the bundled SmolLM2-135M: the platform's behaviour is asserted (the
    job ends with a clear phase, its calls went to the server the run started, which is gone
    after; the token-level export holds exactly the tokens the server generated), not the
    small model's answer."""
    pools = _pools(
        tmp_path,
        {
            "name": "default",
            "model": "smollm2",
            "engine": "llamacpp",
            "engineArgs": ["--ctx-size", "4096", "--parallel", "2"],
            "maxOutputTokens": 48,
            "toolChoice": "required",
            "returnTokenIds": True,
        },
    )
    job = manifest(
        tmp_path,
        orchestrator={"maxSteps": 1},
        subagents={"maxConcurrent": 2, "maxSteps": 1},
        limits={"deadlineSeconds": 240},
    )

    done = kswarm(tmp_path, "run", job, "--pools", pools, "--json", timeout=600)

    assert done.stdout.strip(), f"no report (exit {done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["phase"] in ("Succeeded", "Failed"), report
    assert done.returncode == (0 if report["phase"] == "Succeeded" else 1)
    if report["phase"] == "Failed":
        assert report["reason"], report
    (replica,) = await _replicas_called(tmp_path, report["uid"])
    assert replica.startswith("http://127.0.0.1:")
    assert not _listening(replica), "llama.cpp outlived the run"

    ledger = await Ledger.connect(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        calls = [c for c in await ledger.list_model_calls(report["uid"]) if c.status == "ok"]
    finally:
        await ledger.close()
    assert calls and all(len(c.prompt_token_ids or []) == c.input_tokens for c in calls)
    assert all(len(c.completion_token_ids or []) == c.output_tokens for c in calls)
    exported = kswarm(tmp_path, "export", report["uid"], "--format", "tokens")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    for agent in {c.agent_id for c in calls}:
        mine = [r for r in lines if r["agent_id"] == agent]
        trained = [
            t
            for r in mine
            for t, m in zip(r["response_token_ids"], r["loss_mask"], strict=True)
            if m
        ]
        generated = sorted((c for c in calls if c.agent_id == agent), key=lambda c: c.step)
        assert trained == [t for c in generated for t in c.completion_token_ids or []]


def test_a_missing_engine_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``vllm`` on this PATH (only the interpreter's folder): exit 2 naming the pool and
    what to install, and no ledger written."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    pools = _pools(tmp_path, {"name": "default", "model": "m", "engine": "vllm"})

    done = kswarm(tmp_path, "run", manifest(tmp_path), "--pools", pools)

    assert done.returncode == 2
    assert "pool 'default': engine vllm is not installed" in done.stderr
    assert "pip install 'kswarm[vllm]'" in done.stderr
    assert not (tmp_path / "ledger.db").exists()


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (its direct children)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found |= {int(c) for c in children}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited, it only waits to be reaped


def test_a_killed_run_takes_its_servers_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kswarm run`` killed with SIGKILL (no cleanup runs) mid-job: every server it started
    (the model server of the engine pool and the Temporal dev server) stops too, instead of
    holding its ports and, on a real machine, its GPU."""
    pools, log = _fake_vllm(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_VLLM_TIME_SCALE", "1")  # a job that lasts long enough to kill
    job = manifest(tmp_path, limits={"deadlineSeconds": 600})
    env = {**os.environ, "KSWARM_HOME": str(tmp_path)}
    run = subprocess.Popen(
        [KSWARM, "run", job, "--pools", pools, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        # Both up: the model server answers, and the dev server is a second child of the run.
        while not (
            log.exists()
            and _listening(_served(json.loads(log.read_text())))
            and (len(_children(run.pid)) >= 2)
        ):
            assert run.poll() is None, "kswarm run ended before its servers were up"
            assert time.monotonic() < deadline, "the servers never came up"
            time.sleep(0.2)
        served = _served(json.loads(log.read_text()))
        started = _children(run.pid)
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 60
    while _listening(served) or any(_alive(p) for p in started):
        assert time.monotonic() < deadline, (
            f"outlived the killed run: {[p for p in started if _alive(p)]}, "
            f"model server listening: {_listening(served)}"
        )
        time.sleep(0.2)
