"""Pool config: the document shape, the errors that name the field, the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kswarm.errors import ConfigError
from kswarm.llm import PoolNotFound
from kswarm.llm.pools import (
    PoolConfig,
    PoolRegistry,
    load_pools,
    load_pools_file,
    pool_entry,
    qualified_name,
    split_name,
    with_api_key,
)


def pool_doc(**changes: Any) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "name": "default",
        "model": "kswarm-sim",
        "replicas": ["http://127.0.0.1:8001", "http://127.0.0.1:8002"],
    }
    pool.update(changes)
    return {"pools": [pool]}


def test_loads_every_field_of_a_pool() -> None:
    registry = load_pools(
        pool_doc(
            maxConcurrency=8,
            rateLimit={"requestsPerSecond": 5},
            router="least-load",
            requestTimeoutSeconds=30,
            apiKey="secret",
            stream=True,
            toolChoice="required",
            contextWindow=4096,
            toolCallsInContent=True,
            maxOutputTokens=64,
        )
    )
    pool = registry.get("default")
    assert pool.stream is True
    assert pool.tool_choice == "required"
    assert pool.context_window == 4096
    assert pool.tool_calls_in_content is True
    assert pool.max_output_tokens == 64
    assert pool.replicas == ("http://127.0.0.1:8001", "http://127.0.0.1:8002")
    assert pool.max_concurrency == 8
    assert pool.requests_per_second == 5
    assert pool.router == "least-load"
    assert pool.request_timeout_seconds == 30
    assert pool.api_key == "secret"
    assert "secret" not in repr(pool)


def test_defaults_match_the_documented_ones() -> None:
    pool = load_pools(pool_doc()).get("default")
    assert pool.max_concurrency == 64
    assert pool.requests_per_second is None
    assert pool.router == "prefix-affinity"
    assert pool.request_timeout_seconds == 120
    assert pool.connect_timeout_seconds == 5
    assert pool.stream is False
    assert pool.tool_choice == "auto"
    assert pool.context_window is None
    assert pool.tool_calls_in_content is False
    assert pool.max_output_tokens is None


def test_names_its_task_queue_after_the_pool() -> None:
    assert load_pools(pool_doc()).get("default").task_queue == "kswarm-pool-default"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"replicas": []}, "pools[0].replicas", id="no-replicas"),
        pytest.param({"replicas": ["localhost:1"]}, "pools[0].replicas[0]", id="not-a-url"),
        pytest.param({"replicas": ["http://h:1/v1"]}, "pools[0].replicas[0]", id="with-v1"),
        pytest.param({"maxConcurrency": 0}, "pools[0].maxConcurrency", id="concurrency"),
        pytest.param(
            {"rateLimit": {"requestsPerSecond": -1}},
            "pools[0].rateLimit.requestsPerSecond",
            id="rate",
        ),
        pytest.param({"router": "random"}, "pools[0].router", id="router"),
        pytest.param(
            {"requestTimeoutSeconds": "soon"}, "pools[0].requestTimeoutSeconds", id="timeout"
        ),
        pytest.param({"model": ""}, "pools[0].model", id="model"),
        pytest.param({"stream": "yes"}, "pools[0].stream", id="stream"),
        pytest.param({"toolChoice": "none"}, "pools[0].toolChoice", id="tool-choice"),
        pytest.param({"contextWindow": 100}, "pools[0].contextWindow", id="window-too-small"),
        pytest.param({"contextWindow": "8k"}, "pools[0].contextWindow", id="window-not-int"),
        pytest.param({"maxOutputTokens": 0}, "pools[0].maxOutputTokens", id="max-output"),
        pytest.param(
            {"toolCallsInContent": "on"}, "pools[0].toolCallsInContent", id="calls-in-content"
        ),
        pytest.param({"replica": "x"}, "pools[0].replica", id="unknown-field"),
        pytest.param({"apiKeyFile": ""}, "pools[0].apiKeyFile", id="key-file-empty-path"),
        pytest.param({"apiKeyFile": 3}, "pools[0].apiKeyFile", id="key-file-not-a-path"),
    ],
)
def test_refuses_a_bad_field_and_names_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_pools(pool_doc(**changes))
    assert str(e.value).startswith(f"{field}:")


def test_refuses_two_pools_of_the_same_name() -> None:
    doc = pool_doc()
    doc["pools"].append(dict(doc["pools"][0]))
    with pytest.raises(ConfigError, match="two pools are named 'default'"):
        load_pools(doc)


def test_get_of_an_unknown_pool_names_the_known_ones() -> None:
    registry = load_pools(pool_doc())
    with pytest.raises(PoolNotFound, match="known pools: default"):
        registry.get("gpu")
    assert "default" in registry and len(registry) == 1


def test_reads_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n"
        "  - name: big\n"
        "    model: llama\n"
        "    replicas: [http://10.0.0.1:8000]\n"
        "    rateLimit: {requestsPerSecond: 2.5}\n"
    )
    registry = load_pools_file(str(path))
    assert registry.get("big").requests_per_second == 2.5
    assert [p.name for p in registry] == ["big"]


def test_a_pool_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="router"):
        PoolConfig(name="p", model="m", replicas=("http://h:1",), router="sticky")
    assert PoolRegistry([PoolConfig(name="p", model="m", replicas=("http://h:1",))]).names == ("p",)


def test_a_modelpool_s_qualified_name_gets_a_queue_of_its_own() -> None:
    registry = load_pools(
        {
            "pools": [
                {"name": "team-a/fast", "model": "m", "replicas": ["http://a:8000"]},
                {"name": "team-b/fast", "model": "m", "replicas": ["http://b:8000"]},
                {"name": "fast", "model": "m", "replicas": ["http://c:8000"]},
            ]
        }
    )
    assert [p.task_queue for p in registry] == [
        "kswarm-pool-team-a/fast",
        "kswarm-pool-team-b/fast",
        "kswarm-pool-fast",
    ]
    assert qualified_name("team-a", "fast") == "team-a/fast"
    assert split_name("team-a/fast") == ("team-a", "fast")
    assert split_name("fast") == (None, "fast")


@pytest.mark.parametrize("name", ["/fast", "team-a/", "a/b/c"])
def test_refuses_a_name_that_is_neither_name_nor_namespace_slash_name(name: str) -> None:
    with pytest.raises(ConfigError, match=r"pools\[0\]\.name: must be NAME or NAMESPACE/NAME"):
        load_pools(pool_doc(name=name))


def test_pool_entry_writes_what_load_pools_reads_back() -> None:
    pool = PoolConfig(
        name="ns/p",
        model="m",
        replicas=("http://h:1", "http://h:2"),
        max_concurrency=3,
        requests_per_second=1.5,
        router="round-robin",
        request_timeout_seconds=9,
        connect_timeout_seconds=2,
        tool_choice="required",
        context_window=2048,
        tool_calls_in_content=True,
        max_output_tokens=32,
    )
    (back,) = load_pools({"pools": [pool_entry(pool)]})
    assert back == pool
    plain = pool_entry(PoolConfig(name="p", model="m", replicas=("http://h:1",)))
    assert set(plain) == {"name", "model", "replicas", "maxConcurrency", "router"}


# --------------------------------------------------------------------------- API key files


def test_reads_the_api_key_from_its_file_and_writes_back_only_the_path(tmp_path: Path) -> None:
    key_file = tmp_path / "team-a.remote"
    key_file.write_text("sk-from-a-secret\n")  # `kubectl create secret --from-file` keeps it
    pool = load_pools(pool_doc(apiKeyFile=str(key_file))).get("default")
    assert pool.api_key == "sk-from-a-secret"
    assert pool.api_key_file == str(key_file)
    assert "sk-from-a-secret" not in repr(pool) and str(key_file) in repr(pool)
    entry = pool_entry(pool)
    assert entry["apiKeyFile"] == str(key_file) and "apiKey" not in entry
    (back,) = load_pools({"pools": [entry]})
    assert back == pool


def test_refuses_an_api_key_and_an_api_key_file_together(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-1")
    with pytest.raises(ConfigError) as e:
        load_pools(pool_doc(apiKey="sk-2", apiKeyFile=str(key_file)))
    assert str(e.value).startswith("pools[0].apiKeyFile: not together with apiKey")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(None, "cannot read", id="missing"),
        pytest.param(" \n", "is empty", id="empty"),
        pytest.param(b"\xff\xfe", "not UTF-8", id="binary"),
    ],
)
def test_a_key_file_without_a_key_is_an_error_naming_the_field_and_the_file(
    tmp_path: Path, content: str | bytes | None, why: str
) -> None:
    key_file = tmp_path / "key"
    if isinstance(content, bytes):
        key_file.write_bytes(content)
    elif content is not None:
        key_file.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_pools(pool_doc(apiKeyFile=str(key_file)))
    assert str(e.value).startswith("pools[0].apiKeyFile: ")
    assert str(key_file) in str(e.value) and why in str(e.value)


def test_read_keys_false_leaves_the_file_for_with_api_key_which_reads_it_each_time(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key"
    pool = load_pools(pool_doc(apiKeyFile=str(key_file)), read_keys=False).get("default")
    assert pool.api_key is None  # not there yet, and not read
    with pytest.raises(ConfigError, match=f"cannot read {key_file}"):
        with_api_key(pool)
    key_file.write_text("sk-1\n")
    first = with_api_key(pool)
    assert first.api_key == "sk-1" and with_api_key(first) is first
    key_file.write_text("sk-2")  # rotated
    second = with_api_key(first)
    assert second.api_key == "sk-2" and second != first
    plain = load_pools(pool_doc()).get("default")
    assert with_api_key(plain) is plain
