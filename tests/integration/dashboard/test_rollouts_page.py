"""The Rollouts page, driven with Streamlit's AppTest against a ledger of real rollout groups.

Two groups of the quickstart task are sampled with ``kswarm rollout`` on the embedded stack
(epoch 0 of 3, λ_aux = 0.1): the ``swarm`` profile (R = 0.1 * 0.75 + 0.9 = 0.975) and the
``serial`` profile (r_parallel = 0, R = 0.9, every sample flagged for serial collapse).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[3]
APP = str(REPO / "dashboard" / "app.py")
KSWARM = str(Path(sys.executable).parent / "kswarm")


def _rollout(home: Path, manifest: Path) -> str:
    env = {**os.environ, "KSWARM_HOME": str(home)}
    env.pop("KSWARM_DATABASE_URL", None)
    done = subprocess.run(
        [
            KSWARM,
            "rollout",
            str(manifest),
            "--samples",
            "2",
            "--epochs",
            "3",
            "--json",
            "--time-scale",
            "0.005",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["uid"])


@pytest.fixture(scope="module")
def rollout_ledger(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("rollouts")
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["name"] = "quickstart-serial"
    doc["spec"]["orchestrator"] = {"profile": "serial"}
    serial = home / "serial.yaml"
    serial.write_text(yaml.safe_dump(doc))
    return {
        "url": f"sqlite:///{home / 'ledger.db'}",
        "swarm": _rollout(home, REPO / "examples" / "quickstart.yaml"),
        "serial": _rollout(home, serial),
    }


@pytest.fixture
def rollouts_env(rollout_ledger: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    import streamlit as st

    monkeypatch.setenv("KSWARM_DATABASE_URL", rollout_ledger["url"])
    st.cache_data.clear()
    return rollout_ledger


def _page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/rollouts.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_the_page_lists_groups_terms_and_collapse_flags(rollouts_env: dict[str, str]) -> None:
    at = _page()
    assert at.title[0].value == "Rollouts"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Groups"] == "2" and metrics["Samples"] == "4"
    assert metrics["Serial collapse"] == "2"
    groups = at.dataframe[0].value
    assert dict(zip(groups["name"], groups["mean R"], strict=True)) == {
        "quickstart": 0.975,
        "quickstart-serial": 0.9,
    }
    assert set(groups["epoch"]) == {"0 of 3"}
    samples = at.dataframe[1].value
    assert len(samples) == 4 and set(samples["lambda_aux"]) == {0.1}
    assert len(at.get("plotly_chart")) == 2  # R against critical steps, the λ schedule


def test_choosing_a_group_shows_only_its_samples(rollouts_env: dict[str, str]) -> None:
    at = _page()
    at.selectbox(key="rollouts.group").set_value(rollouts_env["serial"]).run()
    assert not at.exception, [e.message for e in at.exception]
    samples = at.dataframe[1].value
    assert sorted(samples["sample"]) == [0, 1]
    assert set(samples["group_name"]) == {"quickstart-serial"}
    assert samples["serial_collapse"].all()
    assert set(samples["r_parallel"]) == {0.0} and set(samples["reward"]) == {0.9}


def test_an_empty_ledger_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    from kswarm.ledger import migrating

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrating.upgrade(url)
    monkeypatch.setenv("KSWARM_DATABASE_URL", url)
    st.cache_data.clear()
    at = _page()
    assert "kswarm rollout" in at.info[0].value
