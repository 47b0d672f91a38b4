"""``kswarm rollout`` as a user runs it: a group of samples on the embedded stack, scored.

Hand-computed terms for the quickstart task (4 items, the simulator's scripted orchestrator):
the ``swarm`` profile runs one stage of 4 sub-agents that all finish, so r_parallel = 1 - 1/4 =
0.75; the ``serial`` profile runs 4 stages of 1, so r_parallel = 0. Both answer every cell
right (Q = 1). At epoch 0 of 3 λ_aux = 0.1: R = 0.1 * 0.75 + 0.9 = 0.975 (swarm) and 0.9
(serial); at epoch 2 of 3 λ_aux = 0 and both earn R = 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kswarm_run import REPO, kswarm

from kswarm.ledger import Ledger
from kswarm.sim.corpus import default_corpus
from kswarm.sim.tasks import parse_task

FAST = ("--time-scale", "0.005")


def _manifest(tmp_path: Path, **spec: Any) -> str:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    doc["spec"].update(spec)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _group(tmp_path: Path, manifest: str, *args: str) -> dict[str, Any]:
    done = kswarm(tmp_path, "rollout", manifest, "--json", *FAST, *args)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


async def test_a_group_of_swarm_samples_records_every_term_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _group(tmp_path, "examples/quickstart.yaml", "--samples", "3", "--epochs", "3")
    assert [s["phase"] for s in group["samples"]] == ["Succeeded"] * 3
    for s in group["samples"]:
        assert s["terms"] == {
            "lambda_aux": 0.1,
            "r_parallel": 0.75,
            "r_finish": 1.0,
            "success": 1.0,
            "quality": 1.0,
            "reward": 0.975,
            "advantage": 0.0,  # equal rewards: no sample is better than the group
        }
        assert s["serial_collapse"] is False
    assert group["mean_reward"] == 0.975
    monkeypatch.setenv("KSWARM_HOME", str(tmp_path))
    monkeypatch.delenv("KSWARM_DATABASE_URL", raising=False)
    ledger = await Ledger.connect()
    try:
        jobs = [await ledger.get_job(s["uid"]) for s in group["samples"]]
    finally:
        await ledger.close()
    stored = [j.report["rollout"] for j in jobs if j is not None and j.report]
    assert [(r["group"], r["sample"], r["epoch"]) for r in stored] == [
        (group["uid"], i, 0) for i in range(3)
    ]
    assert all(r["terms"]["reward"] == 0.975 for r in stored)


@pytest.mark.parametrize(
    ("epoch", "swarm_r", "serial_r"),
    [pytest.param(0, 0.975, 0.9, id="lambda-0.1"), pytest.param(2, 1.0, 1.0, id="lambda-0")],
)
def test_the_serial_profile_earns_less_while_lambda_is_positive(
    tmp_path: Path, epoch: int, swarm_r: float, serial_r: float
) -> None:
    serial_job = _manifest(tmp_path, orchestrator={"profile": "serial"})
    args = ("--samples", "1", "--epoch", str(epoch), "--epochs", "3")
    swarm = _group(tmp_path, "examples/quickstart.yaml", *args)["samples"][0]
    serial = _group(tmp_path, serial_job, *args)["samples"][0]
    assert (swarm["terms"]["reward"], serial["terms"]["reward"]) == (swarm_r, serial_r)
    assert (swarm["serial_collapse"], serial["serial_collapse"]) == (False, True)


def test_an_answer_key_file_next_to_the_manifest_scores_the_samples(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    task = parse_task(doc["spec"]["task"])
    assert task is not None
    corpus = default_corpus()
    rows = [
        {"entity": n, **{a: corpus.by_name[n].fact(a) for a in task.attributes}}
        for n in task.items[:2]  # half the items: the answer's other cells are wrong
    ]
    (tmp_path / "key.yaml").write_text(yaml.safe_dump(rows))
    manifest = _manifest(
        tmp_path, evaluation={"scorer": "item-f1", "answerKey": {"file": "key.yaml"}}
    )
    group = _group(tmp_path, manifest, "--samples", "2")
    # 6 key cells all reported right among 12 reported: P = 1/2, R = 1, F1 = 2/3.
    assert [s["quality"] for s in group["samples"]] == [round(2 / 3, 6)] * 2


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(("--epoch", "3", "--epochs", "3"), "--epoch", id="epoch"),
        pytest.param(("--samples", "0"), "--samples", id="samples"),
        pytest.param(("--lambda-start", "2"), "--lambda-start", id="lambda"),
    ],
)
def test_bad_group_arguments_exit_2_naming_the_flag(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    done = kswarm(tmp_path, "rollout", "examples/quickstart.yaml", *args)
    assert done.returncode == 2
    assert named in done.stderr


def test_a_job_without_a_scorer_cannot_be_rolled_out(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    del doc["spec"]["evaluation"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = kswarm(tmp_path, "rollout", str(path))
    assert done.returncode == 2
    assert "spec.evaluation" in done.stderr


def test_spec_rollout_sets_the_group_and_flags_override_it(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, rollout={"samples": 2, "epoch": 1, "epochs": 3})
    group = _group(tmp_path, manifest)
    # Epoch 1 of 3: λ_aux = 0.1 + (0 - 0.1) * 1/2 = 0.05; R = 0.05 * 0.75 + 0.95 = 0.9875.
    assert (len(group["samples"]), group["epoch"], group["epochs"]) == (2, 1, 3)
    assert {s["terms"]["lambda_aux"] for s in group["samples"]} == {0.05}
    assert group["mean_reward"] == 0.9875
    overridden = _group(tmp_path, manifest, "--samples", "1", "--epoch", "2")
    assert len(overridden["samples"]) == 1
    assert overridden["samples"][0]["terms"]["lambda_aux"] == 0.0


async def test_each_sample_job_records_its_own_seed_and_the_temperature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("--samples", "2", "--temperature", "0.7", "--seed", "5")
    group = _group(tmp_path, "examples/quickstart.yaml", *args)
    monkeypatch.setenv("KSWARM_HOME", str(tmp_path))
    monkeypatch.delenv("KSWARM_DATABASE_URL", raising=False)
    ledger = await Ledger.connect()
    try:
        specs = [(await ledger.get_job(s["uid"])).spec for s in group["samples"]]  # type: ignore[union-attr]
    finally:
        await ledger.close()
    assert [(s["rollout"]["seed"], s["rollout"]["temperature"]) for s in specs] == [
        (5, 0.7),
        (6, 0.7),
    ]


def test_a_temperature_out_of_range_is_named(tmp_path: Path) -> None:
    done = kswarm(tmp_path, "rollout", "examples/quickstart.yaml", "--temperature", "3")
    assert done.returncode == 2
    assert "--temperature" in done.stderr
