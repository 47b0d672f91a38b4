"""``kswarm operator``: which kopf handler reacts to what, and the process that runs them.

Handlers are plain functions in ``swarmjobs``, ``watching``, ``modelpools`` and
``endpoint_probes``; they are registered here on a registry of their own (not kopf's global
one), with the intervals of the given config, so a test or a second operator in one process gets
exactly what it asks for. The operator serves the whole cluster unless
``KSWARM_WATCH_NAMESPACES`` names namespaces, and always runs standalone (no kopf peering
objects): ``deploy/`` runs one replica with the Recreate strategy, so two operators never
handle the same object.

kopf settings chosen at startup, and why:

* progress and the last-handled spec live in ``kswarm.dev/*`` annotations, never in
  ``status.kopf`` (the CRD schema would prune it, and every write would cost a status patch);
* the finalizer is ``kswarm.dev/finalizer``;
* kopf posts no Events of its own (its retry messages would flood ``kubectl describe``); the
  handlers post the milestones explicitly;
* watches time out on the server side, so a silently dropped connection cannot stall them;
* a deletion waits up to 2 s for the object's daemons to exit within its own pass (they exit
  at once), so the finalizer is released in that pass and the deletion handler runs once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import kopf

from kswarm.operator import (
    approvals,
    endpoint_probes,
    modelpools,
    rollout_groups,
    rollout_watching,
    swarmjobs,
    toolservers,
    watching,
)
from kswarm.operator import deployments as children
from kswarm.operator.runtime import OperatorConfig, Runtime, runtime_of

__all__ = ["FINALIZER", "build_registry", "configure", "main", "run"]

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
    settings.posting.event_name_prefix = "kswarm-"
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or socket.gethostname()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    # A job's daemon exits as soon as it is told to stop; give it that moment inside the
    # deletion's own pass, so the finalizer goes in that pass and the deletion handler runs once.
    settings.background.instant_exit_timeout = 2.0


async def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    rt = runtime_of(memo)
    try:
        await rt.connect()
    except Exception as e:  # retried by kopf until Temporal answers
        raise kopf.TemporaryError(f"cannot connect: {type(e).__name__}: {e}", delay=2) from e
    config = rt.config
    rt.start_publisher()
    log.info(
        "operator started clusterwide=%s namespaces=%s static_pools=%s status_interval=%s "
        "pools_configmap=%s",
        config.clusterwide,
        ",".join(config.watch_namespaces) or "-",
        ",".join(sorted(config.static_pools)),
        config.status_interval,
        f"{config.operator_namespace}/{config.pools_configmap}" if config.pools_configmap else "-",
    )


async def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    await runtime_of(memo).close()


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the ServiceAccount's token; elsewhere: the kubeconfig (KUBECONFIG)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _endpoint_pool(spec: kopf.Spec, **_: Any) -> bool:
    return bool(children.pool_mode(spec) == "endpoint")


def _single_job(spec: kopf.Spec, **_: Any) -> bool:
    return not rollout_groups.is_rollout(spec)


def _rollout_group(spec: kopf.Spec, **_: Any) -> bool:
    return rollout_groups.is_rollout(spec)


def _handler(fn: Callable[..., Any]) -> Any:
    """kopf's callback protocols spell out every keyword it may pass; ours take what they use."""
    return fn


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """Every handler of the operator, registered with ``config``'s intervals."""
    registry = kopf.OperatorRegistry()
    kopf.on.startup(registry=registry, retries=None, backoff=2)(_startup)
    kopf.on.cleanup(registry=registry)(_cleanup)
    kopf.on.login(registry=registry)(_login)

    # SwarmJobs: start once, follow while unfinished, cancel on deletion.
    kopf.index(*MODELPOOLS, id="pool_index", registry=registry)(_handler(modelpools.index_pool))
    kopf.on.create(*SWARMJOBS, id="start", registry=registry, backoff=2)(
        _handler(swarmjobs.start_job)
    )
    # No `when` filter on the phase: kopf would cancel the daemon the moment its own final
    # write comes back through the watch. The daemon ends itself, at once for ended jobs. The
    # filter on spec.rollout is stable (the spec is immutable): a job runs alone or as a group.
    kopf.daemon(
        *SWARMJOBS,
        id="status",
        registry=registry,
        when=_single_job,
        backoff=config.status_interval,
        cancellation_backoff=config.status_interval + 1.0,
        cancellation_timeout=2.0,
    )(_handler(watching.watch_job))
    kopf.daemon(
        *SWARMJOBS,
        id="rollout-status",
        registry=registry,
        when=_rollout_group,
        backoff=config.status_interval,
        cancellation_backoff=config.status_interval + 1.0,
        cancellation_timeout=2.0,
    )(_handler(rollout_watching.watch_group))
    kopf.on.delete(*SWARMJOBS, id="cancel", registry=registry, retries=10, backoff=3)(
        _handler(swarmjobs.cancel_job)
    )

    # ModelPools: apply children on any spec change (and at start), follow their Deployments,
    # probe endpoints, and keep the workers' pools document in step with them all.
    kopf.on.event(*MODELPOOLS, id="publish", registry=registry)(_handler(modelpools.pool_changed))
    for cause in (kopf.on.create, kopf.on.update, kopf.on.resume):
        cause(*MODELPOOLS, id="apply", registry=registry, backoff=5)(
            _handler(modelpools.apply_pool)
        )
    kopf.on.event(*DEPLOYMENTS, id="readiness", registry=registry, labels=OWNED)(
        _handler(modelpools.deployment_changed)
    )
    kopf.timer(
        *MODELPOOLS,
        id="probe",
        registry=registry,
        when=_endpoint_pool,
        interval=config.pool_probe_interval,
    )(_handler(endpoint_probes.probe_pool))
    toolservers.register(registry, probe_interval=config.pool_probe_interval)
    approvals.register(registry)  # decisions by annotation on a SwarmJob
    return registry


# --------------------------------------------------------------------------- the process

LOG_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _configure_logging() -> None:
    """Logging as ``KSWARM_LOG_LEVEL`` says (default INFO), in the operator's key-value format.

    ``force``: ``kswarm operator`` (what deploy/ runs) has already set the root logger up at
    the CLI's level, and a plain ``basicConfig`` would then do nothing, leaving the operator
    silent below WARNING ("operator started", "job finished" never logged).
    """
    level = os.environ.get("KSWARM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format=LOG_FORMAT, force=True)
    # kopf says "Handler ... succeeded" for every pass of every handler: keep its warnings only.
    kopf_level = logging.DEBUG if level == "DEBUG" else logging.WARNING
    logging.getLogger("kopf").setLevel(kopf_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per pool probe otherwise


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kswarm operator`` and ``python -m kswarm.operator``; the exit code.

    It returns when the operator is told to stop (SIGTERM, SIGINT).
    """
    del argv  # configured by the environment only
    _configure_logging()
    config = OperatorConfig.from_env()
    if config.settings.metrics_port:
        from kswarm.ledger.engines import default_url
        from kswarm.telemetry import metrics

        url = config.settings.database_url or default_url()
        metrics.start_metrics_server(config.settings.metrics_port, ledger_url=url)
    run(config)
    return 0
