"""A SwarmJob on a ModelPool in endpoint mode whose endpoint is a real llama.cpp server.

The same small real model as ``tests/integration/llamacpp``, this time through kubectl: the
operator publishes the pool (with its options for real servers) to the worker, the job runs on
it and ends with a phase and a reason, and its status matches the ledger.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from operator_support import apply, assert_status_matches_ledger, get, wait_for

from kswarm.devserver import free_port

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess, SwarmBackend

JOB = {
    "apiVersion": "kswarm.dev/v1alpha1",
    "kind": "SwarmJob",
    "metadata": {"name": "llama"},
    "spec": {
        "task": "Find where Vaskora Analytics and Elstia Networks have their headquarters.",
        "orchestrator": {"pool": "llama", "maxSteps": 2},
        "subagents": {"pool": "llama", "maxConcurrent": 2, "maxSteps": 2},
        "tools": ["search"],
        "limits": {"deadlineSeconds": 400},
        "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.5},
    },
}


@pytest.fixture(scope="module")
def llamacpp_url() -> Iterator[str]:
    """``kswarm llamacpp`` with the bundled SmolLM2-135M, until the module ends."""
    port = free_port()
    cmd = [sys.executable, "-P", "-m", "kswarm.cli", "llamacpp", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, f"kswarm llamacpp exited with {proc.returncode}"
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_job_on_an_endpoint_pool_served_by_llama_cpp_ends_and_matches_the_ledger(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
    llamacpp_url: str,
) -> None:
    cp = control_plane
    pool = {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "llama"},
        "spec": {
            "model": "smollm2",
            "endpoint": f"{llamacpp_url}/v1",
            "toolChoice": "required",
            "maxOutputTokens": 96,
        },
    }
    apply(cp, pool, namespace)
    served = wait_for(
        "the worker to serve the llama pool",
        lambda: swarm.served_pool(f"{namespace}/llama"),
        timeout=60,
    )
    assert (served.tool_choice, served.max_output_tokens) == ("required", 96)
    apply(cp, JOB, namespace)

    def finished() -> dict[str, Any] | None:
        sj = get(cp, "sj", "llama", namespace)
        return sj if sj.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    sj = wait_for("the job to end", finished, timeout=480, every=2)
    status = sj["status"]
    if status["phase"] == "Failed":
        assert status.get("reason"), status
    assert status["totalSteps"] > 0
    assert status["llmCalls"] >= status["totalSteps"]
    assert_status_matches_ledger(status, swarm, sj["metadata"]["uid"])
