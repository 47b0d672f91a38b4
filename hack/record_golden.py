"""Record golden workflow histories from the examples, for the replay test.

Run from the repository root, on the code whose histories must keep replaying:

    .venv/bin/python -P hack/record_golden.py tests/golden/NAME

Each job runs on the embedded stack (real Temporal dev server, simulated pool, SQLite ledger
in a temporary ``KSWARM_HOME``); the history of the job's ``SwarmWorkflow`` and of every
``SubagentWorkflow`` child is written as Temporal's JSON, one file per workflow.
``tests/integration/engine/test_golden_replay.py`` replays every file with the current code.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

JOBS = {
    "quickstart-swarm": ("examples/quickstart.yaml", "swarm", None),
    "quickstart-single": ("examples/quickstart.yaml", "single", None),
    "quickstart-notes": ("examples/quickstart.yaml", "swarm", ["search", "write_note"]),
    "deep-research": ("examples/deep-research.yaml", "swarm", None),
}


async def record(out: Path) -> None:
    from kswarm.embedded import SimOptions, embedded_stack
    from kswarm.workflows import SwarmJobInput, SwarmWorkflow

    out.mkdir(parents=True, exist_ok=True)
    async with embedded_stack(sim=SimOptions(time_scale=0.02)) as stack:
        for name, (path, mode, tools) in JOBS.items():
            doc = yaml.safe_load(Path(path).read_text())
            doc["metadata"] = {"name": name, "uid": f"golden-{name}"}
            doc["spec"]["mode"] = mode
            if tools is not None:
                doc["spec"]["tools"] = tools
            inp = SwarmJobInput.from_manifest(doc)
            handle = await stack.client.start_workflow(
                SwarmWorkflow.run, inp, id=inp.workflow_id, task_queue=stack.task_queue
            )
            result = await handle.result()
            ids = [inp.workflow_id]
            async for wf in stack.client.list_workflows(
                f"WorkflowType = 'SubagentWorkflow' AND WorkflowId STARTS_WITH "
                f"'swarmjob-golden-{name}/'"
            ):
                ids.append(wf.id)
            for wid in ids:
                history = await stack.client.get_workflow_handle(wid).fetch_history()
                (out / f"{wid.replace('/', '__')}.json").write_text(
                    json.dumps(json.loads(history.to_json()), indent=None)
                )
            print(f"{name}: {result.phase}, {len(ids)} histories")


def main() -> None:
    out = Path(sys.argv[1])
    os.environ.setdefault("KSWARM_HOME", tempfile.mkdtemp(prefix="kswarm-golden-"))
    asyncio.run(record(out))


if __name__ == "__main__":
    main()
