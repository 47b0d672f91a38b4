"""ModelPools become the servers they describe, report how ready those are, and reach the
workers through the pools ConfigMap the operator writes (NAMESPACE/NAME, a queue each), with
their API keys in the Secret beside it.

The test control plane has no kubelets, so no pod ever runs: the tests read back the
Deployments and Services the operator applied, and play the Deployment controller by patching
a Deployment's status to see the pool follow it.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from operator_support import (
    OPERATOR_NAMESPACE,
    POOL_KEY,
    POOL_KEYS_SECRET,
    POOLS_CONFIGMAP,
    POOLS_KEY,
    SwarmBackend,
    apply,
    conditions,
    events,
    example,
    get,
    on_pool,
    wait_for,
)

from kswarm.devserver import free_port
from kswarm.llm.pools import PoolConfig, load_pools

if TYPE_CHECKING:
    from conftest import ControlPlane
    from operator_support import OperatorProcess

API = "kswarm.dev/v1alpha1"


def modelpool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ModelPool", "metadata": {"name": name}, "spec": spec}


def appears(cp: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        res = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(res.stdout) if res.returncode == 0 else None

    return wait_for(f"{kind}/{name}", probe, timeout=30)


def pool_status(cp: ControlPlane, name: str, namespace: str, **expected: Any) -> dict[str, Any]:
    """The pool's status once it holds ``expected`` (60 s: the operator shares two loaded cores
    with the rest of the suite); a timeout says what the status held instead."""
    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        st = get(cp, "mp", name, namespace).get("status", {})
        seen[:] = [st]
        return st if all(st.get(k) == v for k, v in expected.items()) else None

    try:
        return wait_for(f"mp/{name} status {expected}", probe, timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}; the status held {seen[-1] if seen else None}") from None


def set_ready(cp: ControlPlane, deployment: str, namespace: str, replicas: int, ready: int) -> None:
    """Do what the Deployment controller and the kubelets would: report ready replicas."""
    status = {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}
    cp.kubectl(
        "patch",
        "deployment",
        deployment,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def owned_by(obj: dict[str, Any], pool: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences", [])
    return refs == [
        {
            "apiVersion": API,
            "kind": "ModelPool",
            "name": pool["metadata"]["name"],
            "uid": pool["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_a_managed_pool_gets_a_vllm_deployment_and_service_owned_by_it(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    spec = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "replicas": 2,
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "32Gi"}},
        "vllmArgs": ["--max-model-len", "16384"],
    }
    apply(cp, modelpool("qwen", **spec), namespace)
    pool = get(cp, "mp", "qwen", namespace)
    dep = appears(cp, "deployment", "pool-qwen", namespace)
    svc = appears(cp, "service", "pool-qwen", namespace)
    assert owned_by(dep, pool) and owned_by(svc, pool)

    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "vllm/vllm-openai:latest"
    assert c["command"] == ["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"]
    args = " ".join(c["args"])
    assert "--enable-prefix-caching --enable-auto-tool-choice --tool-call-parser hermes" in args
    assert args.endswith("--max-model-len 16384")
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "32Gi"}
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["ports"][0]["containerPort"] == 8000
    assert svc["spec"]["ports"][0]["port"] == 8000
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()

    st = pool_status(cp, "qwen", namespace, phase="Pending", readyReplicas=0)
    assert st["endpoints"] == []


def test_a_managed_pool_reports_the_ready_replicas_of_its_deployment(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, modelpool("llama", model="meta-llama/Llama-3.1-8B-Instruct", replicas=2), namespace)
    appears(cp, "deployment", "pool-llama", namespace)
    pool_status(cp, "llama", namespace, phase="Pending")

    set_ready(cp, "pool-llama", namespace, replicas=2, ready=1)
    st = pool_status(cp, "llama", namespace, phase="Degraded", readyReplicas=1)
    assert st["endpoints"] == [f"http://pool-llama.{namespace}.svc:8000"]

    set_ready(cp, "pool-llama", namespace, replicas=2, ready=2)
    pool_status(cp, "llama", namespace, phase="Ready", readyReplicas=2)
    ready = conditions(get(cp, "mp", "llama", namespace))["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ReplicasReady")
    row = cp.kubectl("get", "mp", "llama", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:4] == ["llama", "meta-llama/Llama-3.1-8B-Instruct", "2", "Ready"]

    # A spec change reaches the Deployment.
    cp.kubectl(
        "patch", "mp", "llama", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":3}}'
    )
    wait_for(
        "the Deployment to scale to 3",
        lambda: get(cp, "deployment", "pool-llama", namespace)["spec"]["replicas"] == 3,
        timeout=30,
    )


def test_a_simulator_pool_runs_kswarm_sim_from_the_kswarm_image(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    sim = {"replicas": 3, "timeScale": 0.05, "seed": 7, "maxNumSeqs": 64}
    apply(cp, modelpool("sim", model="kswarm-sim", simulator=sim), namespace)
    pool = get(cp, "mp", "sim", namespace)
    dep = appears(cp, "deployment", "pool-sim", namespace)
    assert owned_by(dep, pool) and owned_by(appears(cp, "service", "pool-sim", namespace), pool)
    assert dep["spec"]["replicas"] == 3
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ghcr.io/kswarm/kswarm:0.1.0"
    assert c["command"] == ["kswarm", "sim"]
    args = " ".join(c["args"])
    for flag in ("--port 8000", "--model kswarm-sim", "--max-num-seqs 64", "--time-scale 0.05"):
        assert flag in args
    assert "--seed 7" in args
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize(
    ("where", "model", "phase", "ready", "reason"),
    [
        pytest.param("sim", "kswarm-sim", "Ready", 1, "EndpointReachable", id="reachable"),
        pytest.param("sim", "other-model", "Degraded", 0, "ModelNotServed", id="other-model"),
        pytest.param("nowhere", "kswarm-sim", "Failed", 0, "EndpointUnreachable", id="dead-port"),
    ],
)
def test_an_endpoint_pool_is_probed_and_reports_what_it_found(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
    where: str,
    model: str,
    phase: str,
    ready: int,
    reason: str,
) -> None:
    cp = control_plane
    base = swarm.pool_urls["default"][0] if where == "sim" else f"http://127.0.0.1:{free_port()}"
    apply(cp, modelpool("remote", model=model, endpoint=f"{base}/v1"), namespace)
    st = pool_status(cp, "remote", namespace, phase=phase, readyReplicas=ready)
    assert st["endpoints"] == ([base] if ready else [])
    cond = conditions(get(cp, "mp", "remote", namespace))["Ready"]
    assert cond["reason"] == reason
    assert "/v1/models" in cond["message"]
    wait_for(
        f"a Pool{phase} event",
        lambda: f"Pool{phase}" in {e["reason"] for e in events(cp, "remote", namespace)},
        timeout=15,
    )
    # No Deployment for a pool the operator does not run.
    assert cp.kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout.strip() == ""


# --------------------------------------------------------------------------- the workers' pools


def pools_configmap(cp: ControlPlane) -> dict[str, Any] | None:
    res = cp.kubectl(
        "get", "configmap", POOLS_CONFIGMAP, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False
    )
    return json.loads(res.stdout) if res.returncode == 0 else None


def published(cp: ControlPlane) -> dict[str, PoolConfig]:
    """The pools of the operator's ConfigMap, read back as a worker reads them (without reading
    the key files: they are the worker's)."""
    cm = pools_configmap(cp)
    if cm is None:
        return {}
    document = yaml.safe_load(cm["data"][POOLS_KEY])
    return {p.name: p for p in load_pools(document, read_keys=False)}


def pool_keys(cp: ControlPlane) -> dict[str, str]:
    """The data of the operator's pool-keys Secret, decoded; empty while there is none."""
    res = cp.kubectl(
        "get", "secret", POOL_KEYS_SECRET, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False
    )
    if res.returncode != 0:
        return {}
    data = json.loads(res.stdout).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def wait_published(
    cp: ControlPlane, what: str, check: Callable[[dict[str, PoolConfig]], bool]
) -> dict[str, PoolConfig]:
    return wait_for(what, lambda: (lambda p: p if check(p) else None)(published(cp)), timeout=30)


def test_the_workers_pools_configmap_lists_every_modelpool_by_namespace_and_follows_it(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    other = f"{namespace}-b"
    cp.kubectl("create", "namespace", other)
    a, b = f"{namespace}/fast", f"{other}/fast"
    sim = {"replicas": 2, "timeScale": 0.01}
    apply(
        cp,
        modelpool(
            "fast",
            model="kswarm-sim",
            simulator=sim,
            maxConcurrency=32,
            rateLimit={"requestsPerSecond": 5},
            router="least-load",
        ),
        namespace,
    )
    url = swarm.pool_urls["default"][0]
    apply(cp, modelpool("fast", model="kswarm-sim", endpoint=f"{url}/v1/"), other)

    pools = wait_published(cp, f"{a} and {b} in the ConfigMap", lambda p: {a, b} <= set(p))
    assert pools[a] == PoolConfig(
        name=a,
        model="kswarm-sim",
        replicas=(f"http://pool-fast.{namespace}.svc:8000",),
        max_concurrency=32,
        requests_per_second=5,
        router="least-load",
    )
    assert pools[b] == PoolConfig(
        name=b, model="kswarm-sim", replicas=(url,), router="prefix-affinity"
    )
    assert (pools[a].task_queue, pools[b].task_queue) == (
        f"kswarm-pool-{namespace}/fast",
        f"kswarm-pool-{other}/fast",
    )
    assert {"default", "slow"} <= set(pools)  # the static pools stay, without a namespace
    cm = pools_configmap(cp)
    assert cm is not None
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kswarm-operator"

    # The worker polls both queues once the file it mounts has caught up.
    wait_for(
        "the worker to poll both pools' queues",
        lambda: {a, b} <= set(swarm.polled_queues()),
        timeout=30,
    )
    assert swarm.polled_queues()[a] == f"kswarm-pool-{namespace}/fast"

    # A change of the spec reaches the document.
    cp.kubectl(
        "patch",
        "mp",
        "fast",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"maxConcurrency": 8, "rateLimit": None, "router": "round-robin"}}),
    )
    pools = wait_published(
        cp, f"{a} with maxConcurrency 8", lambda p: a in p and p[a].max_concurrency == 8
    )
    assert (pools[a].requests_per_second, pools[a].router) == (None, "round-robin")

    # A deleted pool leaves the document, and the worker stops polling its queue.
    cp.kubectl("delete", "mp", "fast", "-n", other, "--timeout=30s", timeout=40)
    pools = wait_published(cp, f"{b} to leave the ConfigMap", lambda p: b not in p)
    assert a in pools
    wait_for(
        f"the worker to stop polling {b}'s queue",
        lambda: b not in swarm.polled_queues() and a in swarm.polled_queues(),
        timeout=30,
    )


def test_jobs_of_two_namespaces_naming_the_same_pool_use_their_own_namespace_s_modelpool(
    control_plane: ControlPlane,
    swarm: SwarmBackend,
    kswarm_operator: OperatorProcess,
    namespace: str,
) -> None:
    cp = control_plane
    other = f"{namespace}-b"
    cp.kubectl("create", "namespace", other)
    first, second = swarm.pool_urls["default"]
    for ns, url in ((namespace, first), (other, second)):
        apply(cp, modelpool("shared", model="kswarm-sim", endpoint=url), ns)
        apply(cp, on_pool(example("quickstart"), "shared", name="job"), ns)
    for ns, url in ((namespace, first), (other, second)):
        cp.kubectl(
            "wait",
            "--for=jsonpath={.status.phase}=Succeeded",
            "sj/job",
            "-n",
            ns,
            "--timeout=90s",
            timeout=100,
        )
        sj = get(cp, "sj", "job", ns)
        assert f"pools: {ns}/shared" in conditions(sj)["Accepted"]["message"]
        calls = swarm.bg.run(swarm.ledger.list_model_calls(sj["metadata"]["uid"]))
        assert calls, "no model call in the ledger"
        assert {(c.pool, c.replica) for c in calls} == {(f"{ns}/shared", url)}


def test_a_job_naming_a_pool_of_another_namespace_is_refused_by_the_api_server(
    control_plane: ControlPlane, namespace: str
) -> None:
    job = on_pool(example("quickstart"), "elsewhere/fast")
    res = control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(job), check=False
    )
    assert res.returncode != 0
    assert "spec.orchestrator.pool" in res.stderr and "own namespace" in res.stderr


def test_the_pools_configmap_is_restored_when_edited_or_deleted_by_hand(
    control_plane: ControlPlane, kswarm_operator: OperatorProcess, namespace: str
) -> None:
    cp = control_plane
    apply(cp, modelpool("kept", model="kswarm-sim", simulator={}), namespace)
    key = f"{namespace}/kept"
    wait_published(cp, f"{key} in the ConfigMap", lambda p: key in p)

    edited = {"data": {POOLS_KEY: "pools: []\n"}}
    cp.kubectl(
        "patch", "configmap", POOLS_CONFIGMAP, "-n", OPERATOR_NAMESPACE, "--type=merge",
        "-p", json.dumps(edited),
    )  # fmt: skip
    wait_published(cp, f"{key} back after a hand edit", lambda p: key in p)

    cp.kubectl("delete", "configmap", POOLS_CONFIGMAP, "-n", OPERATOR_NAMESPACE)
    wait_published(cp, f"{key} back after a deletion", lambda p: key in p)


def test_a_pool_s_api_key_reaches_the_workers_through_a_secret_and_never_the_configmap(
    control_plane: ControlPlane, swarm: SwarmBackend, kswarm_operator: OperatorProcess
) -> None:
    cp = control_plane
    ns = "default"  # deploy/pool-secrets.yaml lets the operator read model-api-key here, only
    name, locked = f"keyed-{uuid.uuid4().hex[:6]}", f"locked-{uuid.uuid4().hex[:6]}"
    key, file = f"{ns}/{name}", f"{ns}.{name}"
    url = swarm.pool_urls["keyed"][0]
    assert swarm.keyed is not None
    cp.kubectl("delete", "secret", "model-api-key", "-n", ns, "--ignore-not-found")
    cp.kubectl(
        "create", "secret", "generic", "model-api-key", "-n", ns,
        f"--from-literal=api-key={POOL_KEY}",
    )  # fmt: skip
    keyed = {"name": "model-api-key"}
    apply(cp, modelpool(name, model="kswarm-sim", endpoint=f"{url}/v1", apiKeySecret=keyed), ns)
    not_granted = {"name": "not-granted", "key": "token"}
    apply(cp, modelpool(locked, model="kswarm-sim", endpoint=url, apiKeySecret=not_granted), ns)
    jobs: list[str] = []
    try:
        # The ConfigMap names the key's file and holds no key; the Secret beside it holds it.
        pools = wait_published(cp, f"{key} in the ConfigMap", lambda p: key in p)
        assert pools[key].api_key_file == f"{swarm.keys_volume}/{file}"
        assert pools[key].api_key is None and f"{ns}/{locked}" not in pools
        text = json.dumps(pools_configmap(cp))
        assert POOL_KEY not in text and "apiKey:" not in text
        keys = wait_for(f"{file} in the Secret", lambda: (k := pool_keys(cp)).get(file) and k)
        assert keys[file] == POOL_KEY and f"{ns}.{locked}" not in keys
        secret = get(cp, "secret", POOL_KEYS_SECRET, OPERATOR_NAMESPACE)
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kswarm-operator"

        # The worker serves it once the kubelet (here, the mirror) has both volumes, and a
        # job's model calls reach the simulator that requires the key.
        wait_for(f"the worker to poll {key}'s queue", lambda: key in swarm.polled_queues())
        assert run_job(cp, swarm, ns, name, jobs) == {(key, url)}

        # A pool whose Secret the operator may not read is left out, and its job waits saying so.
        jobs.append(f"{locked}-job")
        apply(cp, on_pool(example("quickstart"), locked, name=jobs[-1]), ns)
        accepted = wait_for(
            "the job on the locked pool to wait with the reason",
            lambda: (
                (c := conditions(get(cp, "sj", jobs[-1], ns)).get("Accepted"))
                and "spec.apiKeySecret" in c["message"]
                and c
            ),
            timeout=30,
        )
        assert accepted["reason"] == "PoolNotFound"
        assert "Secret default/not-granted cannot be read by the operator" in accepted["message"]

        # A rotated key reaches the Secret (at the next resync: a Secret is no ModelPool event),
        # then the worker, whose next job uses it.
        swarm.keyed.reconfigure(api_key="sk-e2e-second")
        cp.kubectl(
            "patch", "secret", "model-api-key", "-n", ns, "--type=merge",
            "-p", json.dumps({"stringData": {"api-key": "sk-e2e-second"}}),
        )  # fmt: skip
        rotated = "sk-e2e-second"
        wait_for("the rotated key in the Secret", lambda: pool_keys(cp).get(file) == rotated)
        wait_for(
            "the worker to use the rotated key",
            lambda: (pool := swarm.served_pool(key)) is not None and pool.api_key == rotated,
            timeout=30,
        )
        assert run_job(cp, swarm, ns, name, jobs) == {(key, url)}

        # A deleted pool leaves the ConfigMap, and then its key leaves the Secret, so no worker
        # ever lists a pool whose key file is gone. Both writes are waited for; their order is
        # that of their resourceVersions (one etcd revision counts every write of the server).
        cp.kubectl("delete", "mp", name, "-n", ns, "--timeout=30s", timeout=40)
        wait_published(cp, f"{key} to leave the ConfigMap", lambda p: key not in p)
        wait_for(f"{file} to leave the Secret", lambda: file not in pool_keys(cp), timeout=30)
        configmap = pools_configmap(cp)
        assert configmap is not None and key not in published(cp)
        secret = get(cp, "secret", POOL_KEYS_SECRET, OPERATOR_NAMESPACE)
        left_configmap = int(configmap["metadata"]["resourceVersion"])
        left_secret = int(secret["metadata"]["resourceVersion"])
        assert left_configmap < left_secret, "the key left the Secret before the pool left"
    finally:
        for job in jobs:
            cp.kubectl("delete", "sj", job, "-n", ns, "--timeout=30s", check=False, timeout=40)
        for pool in (name, locked):
            cp.kubectl("delete", "mp", pool, "-n", ns, "--ignore-not-found", "--timeout=30s")
        cp.kubectl("delete", "secret", "model-api-key", "-n", ns, "--ignore-not-found")
        swarm.keyed.reconfigure(api_key=POOL_KEY)


def run_job(
    cp: ControlPlane, swarm: SwarmBackend, namespace: str, pool: str, jobs: list[str]
) -> set[tuple[str, str]]:
    """Run a quickstart job on ``pool`` to success; the (pool, replica) of its model calls."""
    jobs.append(f"{pool}-job-{len(jobs)}")
    apply(cp, on_pool(example("quickstart"), pool, name=jobs[-1]), namespace)
    cp.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", f"sj/{jobs[-1]}", "-n", namespace,
        "--timeout=90s", timeout=100,
    )  # fmt: skip
    uid = get(cp, "sj", jobs[-1], namespace)["metadata"]["uid"]
    calls = swarm.bg.run(swarm.ledger.list_model_calls(uid))
    assert calls and {c.status for c in calls} == {"ok"}
    return {(c.pool, c.replica) for c in calls}
