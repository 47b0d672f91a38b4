"""The kswarm operator: SwarmJob and ModelPool objects in, Temporal workflows and model servers
out. ``main()`` runs it (``kswarm operator``, ``python -m kswarm.operator``).

    running          which kopf handler reacts to what; the process
    runtime          configuration and the shared connections (Temporal, ledger, Kubernetes)
    bodies           the Kubernetes bodies the operator reads, typed
    swarmjobs        start a job's workflow, cancel it on deletion
    pool_resolution  which pools a job's pool names mean to the workers
    watching         the daemon that keeps a running job's status true
    rollout_groups   a job with spec.rollout: its rollout group's start and status (pure)
    rollout_watching the daemon that keeps a running group's status true
    answer_keys      a job's answer key read from a ConfigMap before it starts
    status           a job's status from what was observed (pure)
    workflow_runs    Temporal: start once, describe, wait, cancel
    modelpools       run pools' servers and follow their readiness
    endpoint_probes  probe endpoint pools
    deployments      the Deployment and Service of a managed or simulator pool (pure)
    autoscalers      the HPA or KEDA ScaledObject of an autoscaled pool (pure)
    pools_document   the workers' pools document built from the ModelPools (pure)
    workerpools      publish that document and the pools' API keys to the workers
    kube             the operator's own API requests
"""

from kswarm.operator.running import main

__all__ = ["main"]
