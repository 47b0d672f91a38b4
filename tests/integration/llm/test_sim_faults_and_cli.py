"""Faults on demand and by rate, and ``kswarm sim`` as the CLI will run it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

import httpx
import pytest
from llm_sim_support import FAST_RETRY, StartSim, pool_of

from kswarm.devserver import free_ports
from kswarm.llm import ChatRequest, LLMClient
from kswarm.sim.serving import (
    add_sim_arguments,
    load_behaviour,
    run_sim_from_args,
    sim_config_from_args,
)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "kswarm-sim", "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_configured_rates_fail_requests_with_retry_after(start_sim: StartSim) -> None:
    (replica,) = await start_sim(fail_503_rate=1.0, retry_after_seconds=2)
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", json=body())
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    replica.reconfigure(fail_503_rate=0.0, fail_429_rate=1.0)
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", json=body())
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


async def test_fault_rates_are_drawn_per_request(start_sim: StartSim) -> None:
    (replica,) = await start_sim(fail_500_rate=0.3, seed=7)
    async with httpx.AsyncClient() as http:
        codes = [
            (await http.post(replica.url + "/v1/chat/completions", json=body())).status_code
            for _ in range(100)
        ]
    assert 15 <= codes.count(500) <= 45 and codes.count(200) == 100 - codes.count(500)


async def test_a_slow_request_takes_slow_factor_times_its_model(start_sim: StartSim) -> None:
    (replica,) = await start_sim(time_scale=0.01, slow_factor=5)
    async with httpx.AsyncClient() as http:
        url = replica.url + "/v1/chat/completions"
        normal = (await http.post(url, json=body())).json()["kswarm"]["model_seconds"]
        slow = (await http.post(url, json=body(kswarm_fault="slow"))).json()["kswarm"]
    assert slow["model_seconds"] == pytest.approx(5 * normal, rel=0.5)
    assert slow["wall_seconds"] >= 0.9 * slow["model_seconds"]


async def test_an_unknown_fault_is_a_400(start_sim: StartSim) -> None:
    (replica,) = await start_sim()
    async with httpx.AsyncClient() as http:
        r = await http.post(replica.url + "/v1/chat/completions", json=body(kswarm_fault="boom"))
    assert r.status_code == 400


async def test_a_pool_rate_limit_spaces_calls(start_sim: StartSim) -> None:
    (replica,) = await start_sim(time_scale=0)
    client = LLMClient()
    pool = pool_of(replica.url, requests_per_second=20)
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            client.chat(
                pool, ChatRequest(messages=[{"role": "user", "content": f"{i}"}]), retry=FAST_RETRY
            )
            for i in range(30)
        )
    )
    elapsed = time.perf_counter() - t0
    await client.aclose()
    assert 0.45 <= elapsed < 3  # a burst of 20, then 10 more at 50 ms intervals


def test_cli_flags_build_a_sim_config() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    ns = parser.parse_args(
        [
            "--port",
            "9000",
            "--replicas",
            "3",
            "--time-scale",
            "0.01",
            "--seed",
            "4",
            "--max-num-seqs",
            "8",
            "--fail-503-rate",
            "0.1",
        ]
    )
    config = sim_config_from_args(ns)
    assert (ns.port, ns.replicas) == (9000, 3)
    assert (config.time_scale, config.seed, config.max_num_seqs) == (0.01, 4, 8)
    assert config.fail_503_rate == 0.1


def test_cli_refuses_an_invalid_rate() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    assert run_sim_from_args(parser.parse_args(["--fail-500-rate", "2"])) == 2


async def test_serves_replicas_on_consecutive_ports_until_sigterm() -> None:
    port = free_ports(2)
    code = (
        "import argparse, sys\n"
        "from kswarm.sim.serving import add_sim_arguments, run_sim_from_args\n"
        "p = argparse.ArgumentParser(); add_sim_arguments(p)\n"
        "sys.exit(run_sim_from_args(p.parse_args(sys.argv[1:])))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "--port",
        str(port),
        "--replicas",
        "2",
        "--time-scale",
        "0.01",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert f"127.0.0.1:{port}" in banner and f"127.0.0.1:{port + 1}" in banner
        async with httpx.AsyncClient() as http:
            for p in (port, port + 1):
                r = await http.post(f"http://127.0.0.1:{p}/v1/chat/completions", json=body())
                assert r.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def parrot(body: dict[str, Any], rng: Any) -> dict[str, Any]:
    """A behaviour for ``--behaviour``: says which test module answered."""
    return {"role": "assistant", "content": "parrot from the test module"}


def test_cli_loads_a_named_behaviour_and_refuses_bad_names() -> None:
    parser = argparse.ArgumentParser()
    add_sim_arguments(parser)
    ns = parser.parse_args(["--behaviour", f"{__name__}:parrot"])
    assert sim_config_from_args(ns).behaviour is parrot
    for bad, says in [
        ("no-colon", "expected MODULE:FUNCTION"),
        ("kswarm_no_such_module:fn", "cannot import"),
        ("kswarm.sim.config:no_such_function", "has no function 'no_such_function'"),
    ]:
        with pytest.raises(ValueError, match=says):
            load_behaviour(bad)
        assert run_sim_from_args(parser.parse_args(["--behaviour", bad])) == 2


async def test_embedded_stack_runs_a_named_behaviour_in_the_simulator_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``SimOptions.extra["behaviour"] = "MODULE:FUNCTION"`` reaches ``kswarm sim`` in its own
    process (it must be importable there: this test module's folder goes on PYTHONPATH)."""
    import os
    from pathlib import Path

    from kswarm.embedded import SimOptions, _sim_pool

    here = str(Path(__file__).parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    )
    opts = SimOptions(replicas=1, time_scale=0.0, extra={"behaviour": f"{__name__}:parrot"})
    async with _sim_pool(opts) as (pools, sims):
        (proc,) = sims
        assert proc.pid != os.getpid()
        (url,) = pools.get("default").replicas
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{url}/v1/chat/completions", json=body())
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "parrot from the test module"
