"""What a worker makes of its pools file and the API key files its pools name (``PoolsFile``):
the kubelet updates a mounted ConfigMap and a mounted Secret independently, so a pool's entry may
come before its key file, and a key may change while the document stays the same."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from kswarm.errors import ConfigError
from kswarm.workflows.pools_file import PoolsFile

LOGGER = "kswarm.workflows.pools_file"


def write_document(path: Path, *pools: tuple[str, str | None]) -> None:
    """``pools``: (name, key file or None)."""
    entries = []
    for name, key_file in pools:
        entry = {"name": name, "model": "m", "replicas": [f"http://{name.replace('/', '-')}:8000"]}
        if key_file is not None:
            entry["apiKeyFile"] = key_file
        entries.append(entry)
    path.write_text(yaml.safe_dump({"pools": entries}))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """The pools file and the folder of key files (the Secret's mount)."""
    keys = tmp_path / "pool-keys"
    keys.mkdir()
    return tmp_path / "pools.yaml", keys


@pytest.fixture
def keyed(files: tuple[Path, Path]) -> tuple[Path, Path, PoolsFile]:
    """A document with one pool whose key file holds ``sk-1``: the pools file, the key file,
    and a reader of them that has not read yet."""
    pools_yaml, keys = files
    key_file = keys / "ns.remote"
    key_file.write_text("sk-1")
    write_document(pools_yaml, ("ns/remote", str(key_file)))
    return pools_yaml, key_file, PoolsFile(str(pools_yaml))


def test_a_pool_whose_key_file_is_not_there_yet_waits_and_the_others_are_served(
    files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    pools_yaml, keys = files
    key_file = keys / "ns.remote"
    write_document(pools_yaml, ("default", None), ("ns/remote", str(key_file)))
    reader = PoolsFile(str(pools_yaml))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = reader.read()
        again = reader.read()
    assert first is not None and [p.name for p in first] == ["default"]
    assert again is None  # nothing changed, nothing said twice
    (line,) = [r.getMessage() for r in caplog.records]
    assert "pool ns/remote left out until its API key file can be read" in line
    assert str(key_file) in line
    assert "ns/remote" in reader.waiting

    key_file.write_text("sk-1\n")  # the Secret's volume caught up
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        served = reader.read()
    assert served is not None and [p.name for p in served] == ["default", "ns/remote"]
    assert served[1].api_key == "sk-1" and reader.waiting == {}
    assert "pool ns/remote: its API key file can be read now" in caplog.text


def test_a_rotated_key_is_a_changed_pool_even_when_the_document_is_the_same(
    keyed: tuple[Path, Path, PoolsFile],
) -> None:
    _, key_file, reader = keyed
    (first,) = reader.read() or []
    assert reader.read() is None
    key_file.write_text("sk-2\n")
    (second,) = reader.read() or []
    assert (first.api_key, second.api_key) == ("sk-1", "sk-2")
    assert second.replicas == first.replicas


def test_a_served_pool_whose_key_file_goes_away_keeps_its_config(
    keyed: tuple[Path, Path, PoolsFile], caplog: pytest.LogCaptureFixture
) -> None:
    pools_yaml, key_file, reader = keyed
    (served,) = reader.read() or []
    key_file.unlink()  # e.g. the Secret was updated before the ConfigMap that drops the pool
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert reader.read() is None  # still serving what it served
    assert "pool ns/remote keeps its current config until its API key file" in caplog.text
    write_document(pools_yaml, ("ns/remote", str(key_file)), ("default", None))
    kept, default = reader.read() or []
    assert kept == served and kept.api_key == "sk-1" and default.name == "default"
    write_document(pools_yaml, ("default", None))  # ... and then the ConfigMap drops it
    assert [p.name for p in reader.read() or []] == ["default"]


def test_an_invalid_document_raises_and_the_last_good_one_s_keys_are_still_followed(
    keyed: tuple[Path, Path, PoolsFile],
) -> None:
    pools_yaml, key_file, reader = keyed
    reader.read()
    pools_yaml.write_text("pools: [not a pool]\n")
    with pytest.raises(ConfigError, match=r"pools\[0\]"):
        reader.read()
    key_file.write_text("sk-2")
    (pool,) = reader.read() or []
    assert pool.api_key == "sk-2"


def test_a_document_without_key_files_is_read_again_only_when_it_changes(
    files: tuple[Path, Path],
) -> None:
    pools_yaml, _ = files
    write_document(pools_yaml, ("default", None))
    reader = PoolsFile(str(pools_yaml))
    assert [p.name for p in reader.read() or []] == ["default"]
    assert reader.read() is None
    write_document(pools_yaml, ("default", None), ("other", None))
    assert [p.name for p in reader.read() or []] == ["default", "other"]
    pools_yaml.unlink()
    with pytest.raises(OSError):
        reader.read()
