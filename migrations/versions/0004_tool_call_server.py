"""Tool calls record whether the tool has side effects and which MCP server it comes from.

``side_effects``: the tool's side-effect flag when the call was made (for an MCP tool, from its
annotations: ``readOnlyHint`` or ``idempotentHint`` mean none); ``server``: the ToolServer the
tool comes from, ``NULL`` for a built-in tool. Both nullable: rows written before this revision,
and calls of no registered tool (controls, unknown names), keep ``NULL``; nothing is rewritten.
An index on ``started_at`` serves the dashboard's Tool servers page, which reads the calls of a
time window (the last hour by default) every few seconds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 02:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("tool_calls") as batch:
        batch.add_column(sa.Column("side_effects", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("server", sa.String(length=253), nullable=True))
        batch.create_index("ix_tool_calls_started_at", ["started_at"])


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tool_calls") as batch:
        batch.drop_index("ix_tool_calls_started_at")
        batch.drop_column("server")
        batch.drop_column("side_effects")
