"""The swarm's activities, gathered for the worker: bookkeeping, model steps and tool runs.

Activities hold the heavy data; workflows see ids and small summaries. Each family lives in its
own module (``bookkeeping``, ``model_steps``, ``tool_runs``); :class:`SwarmActivities` binds
them all to one process's ledger, model client, pools and tools.
"""

from __future__ import annotations

from kswarm.workflows.approvals import ApprovalActivities
from kswarm.workflows.bookkeeping import BookkeepingActivities
from kswarm.workflows.model_steps import ModelStepActivities
from kswarm.workflows.resources import agent_id_for
from kswarm.workflows.rollout_scoring import RolloutActivities
from kswarm.workflows.tool_runs import ToolActivities

__all__ = ["SwarmActivities", "agent_id_for"]


class SwarmActivities(
    BookkeepingActivities,
    ModelStepActivities,
    ToolActivities,
    ApprovalActivities,
    RolloutActivities,
):
    """Every activity of the swarm workflows, bound to one process's resources."""
