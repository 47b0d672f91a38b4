"""Model calls record token ids and log-probabilities, when the pool asks for them.

Three nullable JSON columns on ``model_calls``: existing rows keep ``NULL``; nothing is
rewritten.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
COLUMNS = ("prompt_token_ids", "completion_token_ids", "logprobs")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("model_calls") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, JSON, nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("model_calls") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
