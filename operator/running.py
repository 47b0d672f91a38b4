"""``kswarm operator``: run the kopf operator until SIGTERM, configured by the environment.

It serves the whole cluster unless ``KSWARM_WATCH_NAMESPACES`` names namespaces, and always
runs standalone (no kopf peering objects): the Deployment in ``deploy/`` runs one replica with
the Recreate strategy, so two operators never handle the same object.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import kopf

from kswarm.operator.handlers import build_registry
from kswarm.operator.runtime import Runtime
from kswarm.operator.settings import OperatorConfig

__all__ = ["main", "run"]

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _configure_logging() -> None:
    level = os.environ.get("KSWARM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format=LOG_FORMAT)
    # kopf says "Handler ... succeeded" for every pass of every handler: keep its warnings only.
    kopf_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    logging.getLogger("kopf").setLevel(kopf_level)


def run(config: OperatorConfig) -> None:
    """Run the operator with ``config`` in this thread until it is told to stop."""
    kopf.run(
        registry=build_registry(config),
        clusterwide=config.clusterwide,
        namespaces=config.watch_namespaces,
        standalone=True,
        liveness_endpoint=config.liveness_endpoint,
        memo=kopf.Memo(runtime=Runtime(config)),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``kswarm operator`` and ``python -m kswarm.operator``."""
    del argv  # configured by the environment only
    _configure_logging()
    run(OperatorConfig.from_env())
