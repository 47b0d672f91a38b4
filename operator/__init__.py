"""The kswarm operator: SwarmJob and ModelPool objects in, Temporal workflows and model servers
out. ``main()`` runs it (``kswarm operator``, ``python -m kswarm.operator``).

    settings       configuration from the environment
    runtime        the shared connections (Temporal, ledger, Kubernetes)
    handlers       which kopf handler reacts to what
    swarmjobs      start, follow and cancel a job's workflow
    status         a job's status from what was observed (pure)
    workflow_runs  Temporal: start once, describe, wait, cancel
    modelpools     run and watch pools; deployments renders their children; probing probes
    kube           the operator's own API requests
"""

from kswarm.operator.running import main

__all__ = ["main"]
