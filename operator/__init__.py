"""The kswarm operator: SwarmJob and ModelPool objects in, Temporal workflows and model servers
out. ``main()`` runs it (``kswarm operator``, ``python -m kswarm.operator``).

    running        which kopf handler reacts to what; the process
    runtime        configuration and the shared connections (Temporal, ledger, Kubernetes)
    swarmjobs      start, follow and cancel a job's workflow
    status         a job's status from what was observed (pure)
    workflow_runs  Temporal: start once, describe, wait, cancel
    modelpools     run, watch and probe pools
    deployments    the Deployment and Service of a managed or simulator pool (pure)
    kube           the operator's own API requests
"""

from kswarm.operator.running import main

__all__ = ["main"]
