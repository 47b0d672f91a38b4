"""Temporal workflows of a swarm job: the SDK's entry points.

client.execute_workflow(SwarmWorkflow.run, SwarmJobInput.from_manifest(doc),
                        id=f"swarmjob-{uid}", task_queue=TASK_QUEUE)
"""

from kswarm.workflows.inputs import (
    TASK_QUEUE,
    JobStatus,
    StageSummary,
    SwarmJobInput,
    SwarmJobResult,
)
from kswarm.workflows.rollout import RolloutInput, RolloutResult, RolloutWorkflow
from kswarm.workflows.swarm import SubagentWorkflow, SwarmWorkflow

__all__ = [
    "TASK_QUEUE",
    "JobStatus",
    "RolloutInput",
    "RolloutResult",
    "RolloutWorkflow",
    "StageSummary",
    "SubagentWorkflow",
    "SwarmJobInput",
    "SwarmJobResult",
    "SwarmWorkflow",
]
