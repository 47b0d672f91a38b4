"""Pools behind an API key, end to end on loopback: the simulator checks keys as ``vllm serve
--api-key`` does, and a worker's pools file that names the key's file (``apiKeyFile``, as the
operator writes it for a ModelPool with ``spec.apiKeySecret``) gets its calls through; a wrong
key fails at once with the 401, and a rotated key reaches the next call."""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from llm_sim_support import FAST_RETRY, StartSim

from kswarm.llm import BadRequest, ChatRequest, LLMClient
from kswarm.llm.pools import PoolConfig, load_pools_file
from kswarm.sim.serving import add_sim_arguments, sim_config_from_args
from kswarm.workflows.pools_file import PoolsFile

KEY = "sk-test-0123456789"


def request() -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": f"task {random.random()}"}])


def chat_body() -> dict[str, Any]:
    return {"model": "kswarm-sim", "messages": [{"role": "user", "content": "hi"}]}


def pools_file(folder: Path, url: str, key: str) -> tuple[Path, Path]:
    """A pools file as the operator writes it, and the key file beside it (the Secret's mount)."""
    keys = folder / "pool-keys"
    keys.mkdir(exist_ok=True)
    key_file = keys / "team-a.remote"
    key_file.write_text(key + "\n")
    entry = {"name": "team-a/remote", "model": "kswarm-sim", "replicas": [url]}
    path = folder / "pools.yaml"
    path.write_text(yaml.safe_dump({"pools": [{**entry, "apiKeyFile": str(key_file)}]}))
    return path, key_file


def served(reader: PoolsFile) -> PoolConfig:
    (pool,) = reader.read() or []
    return pool


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param({}, "Missing API key", id="no-header"),
        pytest.param({"Authorization": KEY}, "Missing API key", id="not-bearer"),
        pytest.param({"Authorization": "Bearer sk-wrong"}, "Incorrect API key", id="wrong-key"),
    ],
)
async def test_the_simulator_refuses_v1_requests_without_its_key_as_vllm_does(
    start_sim: StartSim, headers: dict[str, str], message: str
) -> None:
    (replica,) = await start_sim(api_key=KEY)
    async with httpx.AsyncClient(base_url=replica.url) as http:
        refused = await http.post("/v1/chat/completions", json=chat_body(), headers=headers)
        models = await http.get("/v1/models", headers=headers)
        health, metrics = await http.get("/health"), await http.get("/metrics")
        good = {"Authorization": f"Bearer {KEY}"}
        ok = await http.post("/v1/chat/completions", json=chat_body(), headers=good)
        listed = await http.get("/v1/models", headers=good)
    assert refused.status_code == 401 and models.status_code == 401
    error = refused.json()["error"]
    assert error["message"].startswith(message) and KEY not in error["message"]
    assert (error["type"], error["param"], error["code"]) == ("AuthenticationError", None, 401)
    assert (health.status_code, metrics.status_code) == (200, 200)  # open, as in vLLM
    assert (ok.status_code, listed.status_code) == (200, 200)


async def test_a_pool_whose_key_file_holds_the_key_gets_its_calls_through(
    start_sim: StartSim, llm_client: LLMClient, tmp_path: Path
) -> None:
    (replica,) = await start_sim(api_key=KEY)
    path, key_file = pools_file(tmp_path, replica.url, KEY)
    pool = served(PoolsFile(str(path)))  # the worker's reading
    assert pool.api_key == KEY and pool.api_key_file == str(key_file)
    result = await llm_client.chat(pool, request(), retry=FAST_RETRY)
    assert result.content == "ok" and result.pool == "team-a/remote"
    # `kswarm run --pools FILE` reads the same file the same way.
    assert load_pools_file(str(path)).get("team-a/remote") == pool


async def test_a_wrong_key_fails_at_once_with_the_401_and_is_not_retried(
    start_sim: StartSim, llm_client: LLMClient, tmp_path: Path
) -> None:
    (replica,) = await start_sim(api_key=KEY)
    path, _ = pools_file(tmp_path, replica.url, "sk-wrong")
    with pytest.raises(BadRequest) as e:
        await llm_client.chat(served(PoolsFile(str(path))), request(), retry=FAST_RETRY)
    assert e.value.status == 401 and not e.value.retryable
    assert str(e.value.message).startswith("HTTP 401: Incorrect API key provided")
    assert [a.outcome for a in e.value.attempts] == ["http_401"]
    assert "sk-wrong" not in str(e.value)


async def test_a_rotated_key_reaches_the_next_call_through_the_same_client(
    start_sim: StartSim, llm_client: LLMClient, tmp_path: Path
) -> None:
    (replica,) = await start_sim(api_key=KEY)
    path, key_file = pools_file(tmp_path, replica.url, KEY)
    reader = PoolsFile(str(path))
    before = served(reader)
    await llm_client.chat(before, request(), retry=FAST_RETRY)

    replica.reconfigure(api_key="sk-rotated")  # the server's key changes first ...
    with pytest.raises(BadRequest):
        await llm_client.chat(before, request(), retry=FAST_RETRY)
    key_file.write_text("sk-rotated\n")  # ... then the kubelet updates the mounted Secret
    after = served(reader)
    assert after.api_key == "sk-rotated" and after.replicas == before.replicas
    result = await llm_client.chat(after, request(), retry=FAST_RETRY)
    assert result.content == "ok"


def test_kswarm_sim_takes_its_key_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    monkeypatch.delenv("KSWARM_SIM_API_KEY", raising=False)
    assert sim_config_from_args(parser.parse_args([])).api_key is None
    assert sim_config_from_args(parser.parse_args(["--api-key", "sk-1"])).api_key == "sk-1"
    monkeypatch.setenv("KSWARM_SIM_API_KEY", "sk-env")  # how a simulator pool's pod gets it
    config = sim_config_from_args(parser.parse_args([]))
    assert config.api_key == "sk-env" and "sk-env" not in repr(config)
    monkeypatch.setenv("VLLM_API_KEY", "sk-vllm")  # a vLLM user's setting is not the sim's
    monkeypatch.delenv("KSWARM_SIM_API_KEY")
    assert sim_config_from_args(parser.parse_args([])).api_key is None
