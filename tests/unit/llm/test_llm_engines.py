"""Pools with ``engine``: what the pools file accepts, the command each engine runs, and a worker
that refuses them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from kswarm.errors import ConfigError
from kswarm.llm import engines, vllm
from kswarm.llm.pools import load_pools, pool_entry
from kswarm.workflows.pools_file import PoolsFile


def _one(entry: dict[str, object]) -> object:
    (pool,) = load_pools({"pools": [entry]})
    return pool


def test_an_engine_pool_needs_no_replicas_and_round_trips() -> None:
    entry = {"name": "gpu", "model": "Qwen/Qwen3-8B", "engine": "vllm", "engineArgs": ["-tp", "2"]}
    (pool,) = load_pools({"pools": [entry]})
    assert pool.engine == "vllm" and pool.replicas == () and pool.engine_args == ("-tp", "2")
    assert pool_entry(pool) == {**entry, "maxConcurrency": 64, "router": "prefix-affinity"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(
            {"engine": "sglang"},
            "pools[0].engine: must be one of vllm, llamacpp, got 'sglang'",
            id="unknown-engine",
        ),
        pytest.param(
            {"engine": "vllm", "replicas": ["http://127.0.0.1:8000"]},
            "pools[0].replicas: not together with engine 'vllm'",
            id="engine-and-replicas",
        ),
        pytest.param(
            {"replicas": ["http://127.0.0.1:8000"], "engineArgs": ["-tp", "2"]},
            "pools[0].engineArgs: only with engine",
            id="args-without-engine",
        ),
        pytest.param(
            {"engine": "vllm", "engineArgs": "--max-model-len 8192"},
            "pools[0].engineArgs: must be a list of strings",
            id="args-not-a-list",
        ),
        pytest.param({}, "pools[0].replicas: must be a list of base URLs", id="neither"),
    ],
)
def test_bad_engine_fields_are_refused_naming_the_field(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        _one({"name": "p", "model": "m", **entry})


def test_each_engine_runs_its_own_server_command() -> None:
    (gpu, cpu) = load_pools(
        {
            "pools": [
                {"name": "g", "model": "meta-llama/Llama-3.1-8B", "engine": "vllm"},
                {"name": "c", "model": "s", "engine": "llamacpp", "engineArgs": ["--threads", "4"]},
            ]
        }
    )
    cmd = engines.engine_command(gpu, host="127.0.0.1", port=9001)
    assert cmd == vllm.serve_command("meta-llama/Llama-3.1-8B", host="127.0.0.1", port=9001)
    assert cmd[cmd.index("--tool-call-parser") + 1] == "llama3_json"
    assert engines.engine_command(cpu, host="127.0.0.1", port=9002) == [
        sys.executable,
        "-P",
        "-m",
        "kswarm.cli",
        "llamacpp",
        "--host",
        "127.0.0.1",
        "--port",
        "9002",
        "--threads",
        "4",
    ]


def test_a_missing_engine_names_the_pool_and_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM is not installed here; where it is, ``vllm_installed`` is the seam made to fail."""
    monkeypatch.setattr(vllm, "vllm_installed", lambda: False)
    pools = list(load_pools({"pools": [{"name": "gpu", "model": "m", "engine": "vllm"}]}))
    with pytest.raises(ConfigError, match=r"pool 'gpu': engine vllm is not installed: pip inst"):
        engines.check_engines(pools)


def test_a_worker_refuses_an_engine_pool_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": [{"name": "gpu", "model": "m", "engine": "vllm"}]}))
    with pytest.raises(ConfigError, match="pool 'gpu' names engine vllm: a worker does not start"):
        PoolsFile(str(path)).read()
