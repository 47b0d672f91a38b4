"""``kswarm export --format atif`` of a rollout group and of a job, read back with the ``atif``
package's models (the reference validator of ATIF v1.8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import atif
from test_kswarm_run import kswarm

from kswarm.sim.scripted import SEARCH_STEPS

FAST = ("--time-scale", "0.005")
ITEMS = 4  # the quickstart's companies


def _export(home: Path, ref: str) -> list[atif.Trajectory]:
    done = kswarm(home, "export", ref, "--format", "atif")
    assert done.returncode == 0, done.stderr
    return [atif.Trajectory.model_validate(json.loads(line)) for line in done.stdout.splitlines()]


def _refs(t: atif.Trajectory) -> list[list[str]]:
    """The sub-agents each observation result of the trajectory points at."""
    return [
        [r.trajectory_id or "" for r in res.subagent_trajectory_ref]
        for step in t.steps
        if step.observation
        for res in step.observation.results
        if res.subagent_trajectory_ref
    ]


def test_a_group_exports_one_valid_trajectory_per_sample_with_its_reward_terms(
    tmp_path: Path,
) -> None:
    done = kswarm(
        tmp_path, "rollout", "examples/quickstart.yaml", "--samples", "2", "--json", *FAST
    )
    assert done.returncode == 0, done.stderr
    group: dict[str, Any] = json.loads(done.stdout)
    trajectories = _export(tmp_path, group["uid"])
    assert [t.session_id for t in trajectories] == [s["uid"] for s in group["samples"]]
    for t, sample in zip(trajectories, group["samples"], strict=True):
        assert t.schema_version == "ATIF-v1.8"
        assert t.final_metrics is not None and t.final_metrics.extra is not None
        assert t.final_metrics.extra["reward"] == sample["terms"]
        assert t.final_metrics.extra["criticalSteps"] == sample["critical_steps"]
        subs = t.subagent_trajectories or []
        assert len(subs) == ITEMS
        # One spawn call started all four; its observation points at each embedded trajectory.
        assert _refs(t) == [[s.trajectory_id for s in subs]]
        names = {d["function"]["name"] for d in t.agent.tool_definitions or []}
        assert {"spawn_subagents", "finish", "search"} <= names
        for sub in subs:
            # system, user, then 3 search steps and the answer step of the scripted sub-agent.
            assert [s.source for s in sub.steps] == ["system", "user"] + ["agent"] * (
                SEARCH_STEPS + 1
            )
            search = next(
                d for d in sub.agent.tool_definitions or [] if d["function"]["name"] == "search"
            )
            assert "parameters" in search["function"]
            first = sub.steps[2]
            assert first.tool_calls and first.observation
            assert len(first.observation.results) == len(first.tool_calls)
            assert all(s.metrics and s.metrics.completion_tokens for s in sub.steps[2:])


def test_a_serial_job_refers_to_one_sub_agent_per_spawn(tmp_path: Path) -> None:
    import yaml
    from test_kswarm_run import REPO

    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    doc["spec"]["orchestrator"] = {"profile": "serial"}
    doc["metadata"]["name"] = "serial-job"
    path = tmp_path / "serial.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert kswarm(tmp_path, "run", str(path), "--json", *FAST).returncode == 0
    (t,) = _export(tmp_path, "serial-job")
    refs = _refs(t)
    assert [len(r) for r in refs] == [1] * ITEMS
    assert [r[0] for r in refs] == [s.trajectory_id for s in t.subagent_trajectories or []]
    assert t.final_metrics is not None and t.final_metrics.extra is not None
    assert t.final_metrics.extra["collapse"]["serialCollapse"] is True
    assert t.final_metrics.extra["reward"] is None  # a plain run is not a rollout


def test_an_unknown_job_or_group_is_named(tmp_path: Path) -> None:
    assert kswarm(tmp_path, "run", "examples/quickstart.yaml", "--json", *FAST).returncode == 0
    done = kswarm(tmp_path, "export", "no-such-thing", "--format", "atif")
    assert done.returncode == 2
    assert "no job or rollout group 'no-such-thing'" in done.stderr
