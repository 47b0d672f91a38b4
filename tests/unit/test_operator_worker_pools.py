"""The workers' pools document built from ModelPool objects, the API keys that travel beside it,
and how a job's pool names resolve against it (pure functions, and the publisher against a
stand-in API: the e2e tests run them against a real API server and worker)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from kswarm.errors import ConfigError, SpecError
from kswarm.llm.pools import PoolConfig, load_pools, pool_entry
from kswarm.operator.kube import KubeNotFound, KubeRefused, KubeRetryable
from kswarm.operator.pool_resolution import PoolMissing, resolve_pool, resolve_pools
from kswarm.operator.pools_document import (
    PoolLeftOut,
    build_document,
    load_static_pools,
    model_pool_entry,
    report,
)
from kswarm.operator.workerpools import CONFIGMAP_KEY, PoolPublisher, read_api_keys
from kswarm.spec import parse_spec


def modelpool(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kswarm.dev/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {"model": "kswarm-sim", **spec},
    }


def read_back(text: str) -> dict[str, PoolConfig]:
    """The document as a worker reads it (key files are the workers', not here)."""
    return {p.name: p for p in load_pools(yaml.safe_load(text), read_keys=False)}


# --------------------------------------------------------------------------- one entry


def test_a_managed_pool_is_served_through_its_service_with_the_spec_s_limits() -> None:
    entry = model_pool_entry(
        modelpool(
            "team-a",
            "qwen",
            model="Qwen/Qwen3-8B",
            replicas=2,
            maxConcurrency=32,
            rateLimit={"requestsPerSecond": 7.5},
            router="least-load",
            stream=True,
        )
    )
    assert entry == {
        "name": "team-a/qwen",
        "model": "Qwen/Qwen3-8B",
        "replicas": ["http://pool-qwen.team-a.svc:8000"],
        "maxConcurrency": 32,
        "router": "least-load",
        "rateLimit": {"requestsPerSecond": 7.5},
        "stream": True,
    }


def test_a_simulator_pool_gets_its_service_and_the_defaults_of_the_crd() -> None:
    entry = model_pool_entry(modelpool("team-a", "sim", simulator={"replicas": 3}))
    assert entry == {
        "name": "team-a/sim",
        "model": "kswarm-sim",
        "replicas": ["http://pool-sim.team-a.svc:8000"],
        "maxConcurrency": 64,
        "router": "prefix-affinity",
    }


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("http://vllm.inference.svc:8000/v1", "http://vllm.inference.svc:8000"),
        ("https://models.example.org/v1/", "https://models.example.org"),
        ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
    ],
)
def test_an_endpoint_pool_is_served_at_the_base_url_of_its_endpoint(
    endpoint: str, base: str
) -> None:
    entry = model_pool_entry(modelpool("ns", "remote", endpoint=endpoint))
    assert entry["replicas"] == [base]


def test_an_endpoint_pool_passes_the_options_for_real_servers_to_the_workers() -> None:
    entry = model_pool_entry(
        modelpool(
            "ns",
            "llama",
            endpoint="http://llama.ns.svc:8080",
            toolChoice="required",
            contextWindow=2048,
            toolCallsInContent=True,
            maxOutputTokens=48,
        )
    )
    (pool,) = load_pools({"pools": [entry]})
    assert (pool.tool_choice, pool.context_window) == ("required", 2048)
    assert (pool.tool_calls_in_content, pool.max_output_tokens) == (True, 48)


def test_a_bad_option_for_real_servers_leaves_the_pool_out_naming_the_field() -> None:
    with pytest.raises(PoolLeftOut, match=r"spec\.toolChoice: must be one of auto, required"):
        model_pool_entry(modelpool("ns", "llama", endpoint="http://h:1", toolChoice="any"))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        pytest.param({}, "no endpoint yet", id="no-endpoint"),
        pytest.param({"endpoint": ""}, "no endpoint yet", id="empty-endpoint"),
        pytest.param({"endpoint": "ftp://x:8000"}, "spec.endpoint: must be an http", id="not-http"),
        pytest.param({"simulator": {}, "maxConcurrency": 0}, "spec.maxConcurrency", id="mc"),
        pytest.param(
            {"simulator": {}, "rateLimit": {"requestsPerSecond": 0}},
            "spec.rateLimit.requestsPerSecond",
            id="rps",
        ),
        pytest.param({"simulator": {}, "router": "random"}, "spec.router", id="router"),
        pytest.param({"simulator": {}, "model": ""}, "spec.model", id="model"),
        pytest.param({"simulator": {}, "rateLimit": 5}, "spec.rateLimit", id="rate-not-a-map"),
    ],
)
def test_a_pool_the_workers_cannot_serve_is_left_out_with_the_reason(
    spec: dict[str, Any], reason: str
) -> None:
    with pytest.raises(PoolLeftOut, match=reason.replace(".", r"\.").replace("[", r"\[")):
        model_pool_entry(modelpool("ns", "bad", **spec))


def test_a_pool_being_deleted_or_without_a_namespace_is_left_out() -> None:
    dying = modelpool("ns", "old", simulator={})
    dying["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    with pytest.raises(PoolLeftOut, match="being deleted"):
        model_pool_entry(dying)
    nowhere = modelpool("ns", "x", simulator={})
    del nowhere["metadata"]["namespace"]
    with pytest.raises(PoolLeftOut, match=r"metadata\.namespace"):
        model_pool_entry(nowhere)
    with pytest.raises(PoolLeftOut, match="spec is missing"):
        model_pool_entry({"metadata": {"name": "x", "namespace": "ns"}})


# --------------------------------------------------------------------------- the document


def test_the_document_lists_static_pools_then_every_modelpool_each_on_its_own_queue() -> None:
    static = [
        pool_entry(PoolConfig(name="default", model="m", replicas=("http://sim:8000",))),
    ]
    pools = [
        modelpool("team-b", "fast", endpoint="http://b:8000/v1"),
        modelpool("team-a", "fast", simulator={}),
        modelpool("team-a", "big", replicas=1, model="Qwen/Qwen3-32B"),
    ]
    doc = build_document(pools, static)
    assert doc.pools == ("default", "team-a/big", "team-a/fast", "team-b/fast")
    assert doc.static == ("default",)
    assert doc.left_out == {}
    assert "team-a/fast" in doc and "fast" not in doc
    back = read_back(doc.text)
    assert list(back) == list(doc.pools)
    assert [p.task_queue for p in back.values()] == [
        "kswarm-pool-default",
        "kswarm-pool-team-a/big",
        "kswarm-pool-team-a/fast",
        "kswarm-pool-team-b/fast",
    ]
    assert back["team-b/fast"].replicas == ("http://b:8000",)
    assert doc.text.startswith("# Written by the kswarm operator")
    # The API server's order does not matter: same objects, same text (no needless rewrite).
    assert build_document(list(reversed(pools)), static).text == doc.text


def test_a_pool_without_an_endpoint_is_left_out_logged_once_and_the_rest_still_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pools = [modelpool("ns", "waiting"), modelpool("ns", "ok", simulator={})]
    doc = build_document(pools)
    assert doc.pools == ("ns/ok",)
    assert list(doc.left_out) == ["ns/waiting"]
    assert "no endpoint yet" in doc.left_out["ns/waiting"]
    assert list(read_back(doc.text)) == ["ns/ok"]

    with caplog.at_level(logging.WARNING, logger="kswarm.operator.workerpools"):
        logged = report(doc, {})
        again = report(doc, logged)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "ns/waiting left out: no endpoint yet" in lines[0]
    assert again == logged


def test_a_pool_with_an_api_key_secret_names_its_key_file_and_the_key_goes_to_the_secret() -> None:
    pools = [
        modelpool("ns", "remote", endpoint="http://r:8000", apiKeySecret={"name": "k"}),
        modelpool("ns", "big", replicas=1, apiKeySecret={"name": "k", "key": "token"}),
        modelpool("ns", "open", simulator={}),
    ]
    doc = build_document(pools, keys={"ns/remote": "sk-remote", "ns/big": "sk-big"})
    assert doc.pools == ("ns/big", "ns/open", "ns/remote") and doc.left_out == {}
    assert doc.keys == {"ns.big": "sk-big", "ns.remote": "sk-remote"}
    back = read_back(doc.text)
    assert back["ns/remote"].api_key_file == "/etc/kswarm/pool-keys/ns.remote"
    assert back["ns/big"].api_key_file == "/etc/kswarm/pool-keys/ns.big"
    assert back["ns/open"].api_key_file is None
    assert all(p.api_key is None for p in back.values())
    # The key itself is in neither the ConfigMap's text nor anything that may be logged.
    for text in (doc.text, repr(doc), str(doc)):
        assert "sk-remote" not in text and "sk-big" not in text
    elsewhere = build_document(pools[:1], keys={"ns/remote": "sk-remote"}, keys_dir="/keys/")
    assert read_back(elsewhere.text)["ns/remote"].api_key_file == "/keys/ns.remote"


@pytest.mark.parametrize(
    ("keys", "name", "reason"),
    [
        pytest.param(
            {"ns/remote": PoolLeftOut("spec.apiKeySecret: Secret ns/k does not exist")},
            "remote",
            "spec.apiKeySecret: Secret ns/k does not exist",
            id="unreadable",
        ),
        pytest.param({}, "remote", "spec.apiKeySecret: the key was not read", id="not-read"),
        pytest.param(
            {f"ns/{'r' * 251}": "sk-1"}, "r" * 251, "longer than 253 characters", id="too-long"
        ),
    ],
)
def test_a_pool_whose_key_cannot_reach_the_workers_is_left_out_with_the_reason(
    keys: dict[str, Any], name: str, reason: str
) -> None:
    pools = [
        modelpool("ns", name, endpoint="http://r:8000", apiKeySecret={"name": "k"}),
        modelpool("ns", "open", simulator={}),
    ]
    doc = build_document(pools, keys=keys)
    assert doc.pools == ("ns/open",)
    assert reason in doc.left_out[f"ns/{name}"]
    assert doc.keys == {}
    assert list(read_back(doc.text)) == ["ns/open"]


class KubeStandIn:
    """The few KubeApi calls the publisher makes, recorded; Secrets by ``(namespace, name)``."""

    def __init__(self, pools: list[dict[str, Any]], secrets: dict[tuple[str, str], Any]) -> None:
        self.pools, self.secrets = pools, secrets
        self.writes: list[tuple[str, str, dict[str, str]]] = []
        self.refuse_writes: Exception | None = None

    async def list_objects(
        self, group: str, version: str, plural: str, namespaces: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        return self.pools

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        found = self.secrets.get((namespace, name))
        if isinstance(found, Exception):
            raise found
        if found is None:
            raise KubeNotFound(f"read secret {namespace}/{name}", 404, "Not Found")
        return dict(found)

    async def apply_secret(
        self, namespace: str, name: str, data: Mapping[str, str], **_: Any
    ) -> None:
        if self.refuse_writes is not None:
            raise self.refuse_writes
        self.writes.append(("Secret", f"{namespace}/{name}", dict(data)))

    async def apply_config_map(
        self, namespace: str, name: str, data: Mapping[str, str], **_: Any
    ) -> None:
        self.writes.append(("ConfigMap", f"{namespace}/{name}", dict(data)))


FORBIDDEN = KubeRefused("read secret ns/locked", 403, "Forbidden")


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        pytest.param(None, "Secret ns/k does not exist", id="no-secret"),
        pytest.param({"other": b"x"}, "Secret ns/k has no key 'api-key'", id="no-key"),
        pytest.param({"api-key": b" \n"}, "the value of 'api-key' is empty", id="empty"),
        pytest.param(FORBIDDEN, "cannot be read by the operator (HTTP 403)", id="no-rbac"),
    ],
)
async def test_read_api_keys_says_why_a_secret_gives_no_key(secret: Any, reason: str) -> None:
    pool = modelpool("ns", "remote", endpoint="http://r:8000", apiKeySecret={"name": "k"})
    api: Any = KubeStandIn([pool], {("ns", "k"): secret} if secret is not None else {})
    keys = await read_api_keys(api, [pool])
    assert isinstance(keys["ns/remote"], PoolLeftOut)
    assert str(keys["ns/remote"]).startswith("spec.apiKeySecret: Secret ns/k")
    assert reason in str(keys["ns/remote"])
    doc = build_document([pool], keys=keys)
    assert reason in doc.left_out["ns/remote"] and doc.pools == ()


async def test_read_api_keys_reads_the_named_key_and_leaves_a_busy_api_server_to_a_retry() -> None:
    pool = modelpool("ns", "remote", endpoint="http://r:8000", apiKeySecret={"name": "k"})
    other = modelpool("ns", "big", replicas=1, apiKeySecret={"name": "k2", "key": "token"})
    api: Any = KubeStandIn(
        [pool, other], {("ns", "k"): {"api-key": b"sk-1\n"}, ("ns", "k2"): {"token": b"sk-2"}}
    )
    assert await read_api_keys(api, [pool, other, modelpool("ns", "x", simulator={})]) == {
        "ns/remote": "sk-1",
        "ns/big": "sk-2",
    }
    api.secrets[("ns", "k")] = KubeRetryable("read secret ns/k", 503, "busy")
    with pytest.raises(KubeRetryable):
        await read_api_keys(api, [pool])


async def test_the_publisher_writes_new_keys_before_the_configmap_and_only_on_change() -> None:
    remote = modelpool("ns", "remote", endpoint="http://r:8000", apiKeySecret={"name": "k"})
    api: Any = KubeStandIn([remote], {("ns", "k"): {"api-key": b"sk-1"}})
    publisher = PoolPublisher(api, namespace="kswarm-system", keys_dir="/keys")
    doc = await publisher.publish()
    assert [(kind, where) for kind, where, _ in api.writes] == [
        ("Secret", "kswarm-system/kswarm-pool-keys"),
        ("ConfigMap", "kswarm-system/kswarm-pools"),
    ]
    assert api.writes[0][2] == {"ns.remote": "sk-1"}
    configmap = api.writes[1][2][CONFIGMAP_KEY]
    assert "apiKeyFile: /keys/ns.remote" in configmap and "sk-1" not in configmap
    assert doc.pools == ("ns/remote",)

    await publisher.publish()  # nothing changed: nothing written
    assert len(api.writes) == 2
    await publisher.publish(force=True)  # a resync writes both again
    assert [kind for kind, _, _ in api.writes[2:]] == ["Secret", "ConfigMap"]

    api.secrets[("ns", "k")] = {"api-key": b"sk-2"}  # rotated: only the Secret changes
    await publisher.publish()
    assert api.writes[4:] == [("Secret", "kswarm-system/kswarm-pool-keys", {"ns.remote": "sk-2"})]

    # The pool is gone: it leaves the ConfigMap first, then its key leaves the Secret.
    api.pools = [modelpool("ns", "open", simulator={})]
    await publisher.publish()
    assert [kind for kind, _, _ in api.writes[5:]] == ["ConfigMap", "Secret"]
    assert "ns/remote" not in api.writes[5][2][CONFIGMAP_KEY] and api.writes[6][2] == {}
    await publisher.publish(force=True)  # a resync after it writes each once, keys first
    assert [(kind, data) for kind, _, data in api.writes[7:8]] == [("Secret", {})]
    assert [kind for kind, _, _ in api.writes[7:]] == ["Secret", "ConfigMap"]


async def test_a_new_key_and_a_removed_one_in_one_pass_keep_every_listed_pool_keyed() -> None:
    first = modelpool("ns", "first", endpoint="http://r:8000", apiKeySecret={"name": "k"})
    second = modelpool("ns", "second", endpoint="http://s:8000", apiKeySecret={"name": "k"})
    api: Any = KubeStandIn([first], {("ns", "k"): {"api-key": b"sk-1"}})
    publisher = PoolPublisher(api, namespace="kswarm-system", keys_dir="/keys")
    await publisher.publish()
    api.writes.clear()

    api.pools = [second]  # one pool replaced by another in the same pass
    await publisher.publish()
    assert [(kind, data) for kind, _, data in api.writes if kind == "Secret"] == [
        ("Secret", {"ns.first": "sk-1", "ns.second": "sk-1"}),
        ("Secret", {"ns.second": "sk-1"}),
    ]
    assert [kind for kind, _, _ in api.writes] == ["Secret", "ConfigMap", "Secret"]


async def test_a_keys_secret_the_operator_cannot_write_leaves_the_keyed_pools_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = modelpool("ns", "remote", endpoint="http://r:8000", apiKeySecret={"name": "k"})
    api: Any = KubeStandIn(
        [remote, modelpool("ns", "open", simulator={})], {("ns", "k"): {"api-key": b"sk-1"}}
    )
    api.refuse_writes = KubeRefused("apply Secret kswarm-system/kswarm-pool-keys", 403, "no")
    publisher = PoolPublisher(api, namespace="kswarm-system")
    with caplog.at_level(logging.WARNING, logger="kswarm.operator.workerpools"):
        doc = await publisher.publish()
        await publisher.publish()
    assert doc.pools == ("ns/open",)
    assert "cannot pass the key on to the workers" in doc.left_out["ns/remote"]
    assert "kswarm-system/kswarm-pool-keys: HTTP 403" in doc.left_out["ns/remote"]
    assert [kind for kind, _, _ in api.writes] == ["ConfigMap"]  # the other pools still go
    refusals = [r for r in caplog.records if "pool keys not written" in r.getMessage()]
    assert len(refusals) == 1

    api.refuse_writes = None  # RBAC fixed: the pool is served from the next pass
    doc = await publisher.publish()
    assert doc.pools == ("ns/open", "ns/remote")


def test_an_empty_cluster_gives_an_empty_list_the_workers_accept() -> None:
    doc = build_document([])
    assert doc.pools == ()
    assert len(load_pools(yaml.safe_load(doc.text))) == 0


def test_static_pools_are_validated_and_have_no_namespace(tmp_path: Path) -> None:
    good = tmp_path / "static.yaml"
    good.write_text(
        "pools:\n  - {name: default, model: m, replicas: ['http://s:8000'], rateLimit: "
        "{requestsPerSecond: 3}}\n"
    )
    assert load_static_pools(str(good)) == [
        {
            "name": "default",
            "model": "m",
            "replicas": ["http://s:8000"],
            "maxConcurrency": 64,
            "router": "prefix-affinity",
            "rateLimit": {"requestsPerSecond": 3},
        }
    ]
    qualified = tmp_path / "bad.yaml"
    qualified.write_text("pools:\n  - {name: ns/x, model: m, replicas: ['http://s:8000']}\n")
    with pytest.raises(ConfigError, match="has no namespace"):
        load_static_pools(str(qualified))
    with pytest.raises(ConfigError, match="no-such-file"):
        load_static_pools(str(tmp_path / "no-such-file.yaml"))


# --------------------------------------------------------------------------- a job's pool names


def resolve(pool: str, namespace: str = "team-a", **view: Any) -> str:
    doc = build_document(
        [
            modelpool("team-a", "fast", simulator={}),
            modelpool("team-b", "fast", simulator={}),
            modelpool("team-a", "default", simulator={}),
            modelpool("team-a", "broken"),
        ],
        [pool_entry(PoolConfig(name="default", model="m", replicas=("http://s:8000",)))],
    )
    args: dict[str, Any] = {
        "static": {"default", "slow"},
        "pool_index": {
            ("team-a", "fast"),
            ("team-b", "fast"),
            ("team-a", "default"),
            ("team-a", "broken"),
            ("team-a", "new"),
        },
        "publishing": True,
        "document": doc,
    }
    args.update(view)
    return resolve_pool("spec.subagents.pool", pool, namespace, **args)


def test_a_job_s_pool_is_the_modelpool_of_its_own_namespace() -> None:
    assert resolve("fast") == "team-a/fast"
    assert resolve("fast", "team-b") == "team-b/fast"
    assert resolve("team-a/fast") == "team-a/fast"  # the SDK's spelling of the same pool


def test_a_namespace_s_modelpool_comes_before_a_static_pool_of_that_name() -> None:
    assert resolve("default") == "team-a/default"
    assert resolve("default", "team-b") == "default"
    assert resolve("slow") == "slow"


def test_a_pool_that_cannot_be_served_keeps_the_job_waiting_with_the_reason() -> None:
    with pytest.raises(PoolMissing, match="'broken' in namespace 'team-a' cannot be served: no"):
        resolve("broken")
    with pytest.raises(PoolMissing, match="'new' in namespace 'team-a' is not in the workers'"):
        resolve("new")
    with pytest.raises(PoolMissing, match="'nowhere' not found in namespace 'team-a'"):
        resolve("nowhere")
    with pytest.raises(PoolMissing, match="'fast' not found in namespace 'team-c'"):
        resolve("fast", "team-c")


def test_a_pool_of_another_namespace_is_an_invalid_spec_naming_the_field() -> None:
    with pytest.raises(SpecError, match=r"spec\.subagents\.pool.*own namespace \('team-a'\)"):
        resolve("team-b/fast")


def test_without_a_publisher_the_modelpool_index_decides() -> None:
    assert resolve("new", publishing=False, document=None) == "team-a/new"
    assert resolve("slow", publishing=False, document=None) == "slow"
    with pytest.raises(PoolMissing):
        resolve("nowhere", publishing=False, document=None)


def test_before_the_first_document_only_static_pools_resolve() -> None:
    assert resolve("slow", document=None) == "slow"
    with pytest.raises(PoolMissing, match="not in the workers' pools yet"):
        resolve("fast", document=None)


def test_resolve_pools_rewrites_both_pools_and_lists_each_problem_once() -> None:
    spec = parse_spec(
        {"task": "t", "orchestrator": {"pool": "fast"}, "subagents": {"pool": "default"}}
    )
    view: dict[str, Any] = {
        "static": {"default"},
        "pool_index": {("ns", "fast")},
        "publishing": True,
        "document": build_document([modelpool("ns", "fast", simulator={})]),
    }
    resolved, missing = resolve_pools(spec, "ns", **view)
    assert (resolved.orchestrator.pool, resolved.subagents.pool) == ("ns/fast", "default")
    assert missing == []
    assert resolved.subagents.max_concurrent == spec.subagents.max_concurrent

    lost = parse_spec({"task": "t", "orchestrator": {"pool": "x"}, "subagents": {"pool": "x"}})
    _, missing = resolve_pools(lost, "ns", **view)
    assert missing == ["ModelPool 'x' not found in namespace 'ns'"]
