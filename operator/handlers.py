"""Which kopf handler reacts to what: the operator's whole surface in one place.

Handlers are plain functions in ``swarmjobs`` and ``modelpools``; they are registered here on a
registry of their own (not kopf's global one), with the intervals of the given config, so a
test or a second operator in one process gets exactly what it asks for.

kopf settings chosen at startup, and why:

* progress and the last-handled spec live in ``kswarm.dev/*`` annotations, never in
  ``status.kopf`` (the CRD schema would prune it, and every write would cost a status patch);
* the finalizer is ``kswarm.dev/finalizer``;
* kopf posts no Events of its own (its retry messages would flood ``kubectl describe``); the
  handlers post the milestones explicitly;
* watches time out on the server side, so a silently dropped connection cannot stall them.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import kopf

from kswarm.operator import deployments as children
from kswarm.operator import modelpools, swarmjobs
from kswarm.operator.runtime import runtime_of
from kswarm.operator.settings import OperatorConfig
from kswarm.operator.status import TERMINAL_PHASES

__all__ = ["FINALIZER", "build_registry", "configure"]

log = logging.getLogger(__name__)

FINALIZER = "kswarm.dev/finalizer"
ANNOTATION_PREFIX = "kswarm.dev"
SWARMJOBS = (swarmjobs.GROUP, swarmjobs.VERSION, swarmjobs.PLURAL)
MODELPOOLS = (modelpools.GROUP, modelpools.VERSION, modelpools.PLURAL)
DEPLOYMENTS = ("apps", "v1", "deployments")
OWNED = {children.LABEL_MANAGED_BY: children.MANAGED_BY}


def configure(settings: kopf.OperatorSettings) -> None:
    """The kopf settings of the module docstring."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.CRITICAL + 1
    settings.posting.reporting_component = "kswarm-operator"
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or socket.gethostname()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60


async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    rt = runtime_of(memo)
    try:
        await rt.connect()
    except Exception as e:  # retried by kopf until Temporal answers
        raise kopf.TemporaryError(f"cannot connect: {type(e).__name__}: {e}", delay=2) from e
    config = rt.config
    log.info(
        "operator started clusterwide=%s namespaces=%s static_pools=%s status_interval=%s",
        config.clusterwide,
        ",".join(config.watch_namespaces) or "-",
        ",".join(sorted(config.static_pools)),
        config.status_interval,
    )


async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    await runtime_of(memo).close()


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL_PHASES


def _endpoint_pool(spec: kopf.Spec, **_: Any) -> bool:
    return children.pool_mode(spec) == "endpoint"


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler of the operator, registered with ``config``'s intervals."""
    registry = kopf.OperatorRegistry()
    kopf.on.startup(registry=registry, retries=None, backoff=2)(_startup)
    kopf.on.cleanup(registry=registry)(_cleanup)

    # SwarmJobs: start once, follow while unfinished, cancel on deletion.
    kopf.index(*MODELPOOLS, id="pool_index", registry=registry)(modelpools.index_pool)
    kopf.on.create(*SWARMJOBS, id="start", registry=registry, backoff=2)(swarmjobs.start_job)
    kopf.daemon(
        *SWARMJOBS,
        id="status",
        registry=registry,
        when=_unfinished,
        cancellation_timeout=2.0,
        backoff=config.status_interval,
    )(swarmjobs.watch_job)
    kopf.on.delete(*SWARMJOBS, id="cancel", registry=registry, retries=10, backoff=3)(
        swarmjobs.cancel_job
    )

    # ModelPools: apply children on any spec change (and at start), follow their Deployments,
    # probe endpoints.
    for cause in (kopf.on.create, kopf.on.update, kopf.on.resume):
        cause(*MODELPOOLS, id="apply", registry=registry, backoff=5)(modelpools.apply_pool)
    kopf.on.event(*DEPLOYMENTS, id="readiness", registry=registry, labels=OWNED)(
        modelpools.deployment_changed
    )
    kopf.timer(
        *MODELPOOLS,
        id="probe",
        registry=registry,
        when=_endpoint_pool,
        interval=config.pool_probe_interval,
    )(modelpools.probe_pool)
    return registry
