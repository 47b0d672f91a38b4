"""The ledger: every job, agent, message, model call and tool call, recorded exactly once."""

from kswarm.ledger.records import (
    AgentEnd,
    AgentRecord,
    JobCounters,
    ModelCallRecord,
    StageRecord,
    ToolCallBegin,
    ToolCallKey,
)
from kswarm.ledger.repository import Ledger

__all__ = [
    "AgentEnd",
    "AgentRecord",
    "JobCounters",
    "Ledger",
    "ModelCallRecord",
    "StageRecord",
    "ToolCallBegin",
    "ToolCallKey",
]
