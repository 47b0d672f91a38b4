"""Schema upgrades. Placeholder until the Alembic environment lands: creates the tables."""

from __future__ import annotations

from sqlalchemy import create_engine

from kswarm.ledger import engines, models


def upgrade(url: str, revision: str = "head") -> None:
    engine = create_engine(engines.sync_url(url))
    models.Base.metadata.create_all(engine)
    engine.dispose()
