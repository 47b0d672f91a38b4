"""``kswarm run`` as a user runs it: a subprocess, the embedded stack, exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kswarm.sim.scripted import UNKNOWN_TASK

REPO = Path(__file__).resolve().parents[3]
KSWARM = str(Path(sys.executable).parent / "kswarm")
REPORT_KEYS = {
    "name",
    "phase",
    "criticalSteps",
    "totalSteps",
    "speedup",
    "stages",
    "subagents",
    "toolCalls",
    "llmCalls",
    "tokens",
    "wallSeconds",
    "modelSeconds",
    "quality",
    "reason",
    "result",
}


def kswarm(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KSWARM_HOME": str(home)}
    env.pop("KSWARM_DATABASE_URL", None)
    return subprocess.run(
        [KSWARM, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


def manifest(tmp_path: Path, **spec: object) -> str:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    doc["spec"].update(spec)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_quickstart_succeeds_and_prints_the_report_object(tmp_path: Path) -> None:
    done = kswarm(tmp_path, "run", "examples/quickstart.yaml", "--json", "--time-scale", "0.005")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert REPORT_KEYS <= set(report)
    assert report["phase"] == "Succeeded"
    assert report["subagents"] == {"spawned": 4, "succeeded": 4, "failed": 0}
    assert report["toolCalls"]["total"] == 60
    assert report["criticalSteps"] == 6 and report["quality"] == 1.0
    assert [s["subagents"] for s in report["stages"]] == [4, 0]
    assert (tmp_path / "ledger.db").exists()


def test_the_human_report_shows_the_figures(tmp_path: Path) -> None:
    done = kswarm(tmp_path, "run", "examples/quickstart.yaml", "--time-scale", "0.005")
    assert done.returncode == 0, done.stderr
    for text in ("critical steps", "speedup", "Succeeded", "quality"):
        assert text in done.stdout


def test_a_job_that_fails_exits_1_with_its_reason(tmp_path: Path) -> None:
    job = manifest(tmp_path, limits={"maxToolCalls": 5})
    done = kswarm(tmp_path, "run", job, "--json", "--time-scale", "0.005")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["reason"].startswith("BudgetExceeded: spec.limits.maxToolCalls")


FREE_TEXT = (
    "Compare the GPU offerings of the three largest cloud providers and write a recommendation"
)


def test_a_free_text_task_on_the_simulated_pool_fails_saying_the_model_does_not_know_it(
    tmp_path: Path,
) -> None:
    job = manifest(tmp_path, task=FREE_TEXT, evaluation=None)
    done = kswarm(tmp_path, "run", job, "--json", "--time-scale", "0.005")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Failed"
    assert report["reason"] == f"ModelRefused: {UNKNOWN_TASK}"
    assert report["quality"] is None and report["subagents"]["spawned"] == 0
    # One line on stderr says the pool is simulated (stdout stays one JSON object).
    assert "not a real model" in done.stderr


def test_a_job_without_evaluation_has_no_quality(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    del doc["spec"]["evaluation"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = kswarm(tmp_path, "run", str(path), "--json", "--time-scale", "0.005")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Succeeded" and report["quality"] is None


def test_two_runs_at_once_do_not_collide(tmp_path: Path) -> None:
    env = {**os.environ, "KSWARM_HOME": str(tmp_path)}
    args = [KSWARM, "run", "examples/quickstart.yaml", "--json", "--time-scale", "0.005"]
    procs = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    uids = {json.loads(o[0])["uid"] for o in outs}
    assert len(uids) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"task": None}, "spec.task: is required", id="missing-task"),
        pytest.param(
            {"tools": ["search", "rm_rf"]}, "spec.tools[1]: unknown tool 'rm_rf'", id="unknown-tool"
        ),
        pytest.param(
            {"subagents": {"maxConcurrent": 1000}},
            "spec.subagents.maxConcurrent: must be between 1 and 300, got 1000",
            id="too-many-subagents",
        ),
        pytest.param(
            {"subagents": {"pool": "gpu-a100"}},
            "spec.subagents.pool: unknown pool 'gpu-a100'",
            id="unknown-pool",
        ),
        pytest.param(
            {"limits": {"maxToolCalls": -1}},
            "spec.limits.maxToolCalls: must be between 1 and 100000, got -1",
            id="negative-budget",
        ),
    ],
)
def test_invalid_jobs_exit_2_naming_the_field_and_start_nothing(
    tmp_path: Path, spec: dict[str, object], message: str
) -> None:
    job = manifest(tmp_path, **spec)
    done = kswarm(tmp_path, "run", job, "--json", timeout=60)
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert done.stdout == ""
    assert not (tmp_path / "ledger.db").exists()
    assert not (tmp_path / "runs").exists()


def test_invalid_yaml_exits_2_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: kswarm.dev/v1alpha1\nkind: SwarmJob\nspec:\n  task: [oops\n")
    done = kswarm(tmp_path, "run", str(bad), timeout=60)
    assert done.returncode == 2
    assert "invalid YAML at line" in done.stderr
    assert not (tmp_path / "ledger.db").exists()


def test_an_unreachable_database_exits_2_naming_the_url_without_its_password(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "KSWARM_HOME": str(tmp_path),
        "KSWARM_DATABASE_URL": "postgresql://kswarm:s3cret@127.0.0.1:9/kswarm",
    }
    done = subprocess.run(
        [KSWARM, "run", "examples/quickstart.yaml", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2
    assert "127.0.0.1:9" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
