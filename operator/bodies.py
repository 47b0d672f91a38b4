"""The Kubernetes bodies the operator reads, typed: what each handler may expect to find.

The API server has checked every kswarm object against its CRD (``crds/``) before the operator
sees it, so these types describe the CRD's shapes with its defaults applied; ``total=False``
marks what an object may lack. Raw bodies come in as kopf's mapping views or the client's
dicts; they are cast to these types once, where they enter (the handlers' arguments,
``KubeApi.list_objects``), and read through them everywhere else.
"""

from __future__ import annotations

from typing import Any, Literal, Required, TypedDict

__all__ = [
    "ApiKeySecretRef",
    "AutoscalingSpec",
    "Condition",
    "DeploymentSpec",
    "DeploymentStatus",
    "ModelPool",
    "ModelPoolSpec",
    "ModelPoolStatus",
    "ObjectMeta",
    "OwnerReference",
    "PoolMode",
    "RateLimit",
    "SimulatorSpec",
    "SwarmJobStatus",
]

PoolMode = Literal["managed", "simulator", "endpoint"]
"""How a ModelPool's servers come to be (see ``deployments.pool_mode``)."""


class OwnerReference(TypedDict):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    deletionTimestamp: str
    labels: dict[str, str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: Required[str]
    status: Required[str]
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


# --------------------------------------------------------------------------- ModelPool


class ApiKeySecretRef(TypedDict, total=False):
    name: Required[str]
    key: str
    """The CRD's default: ``api-key``."""


class SimulatorSpec(TypedDict, total=False):
    replicas: int
    maxNumSeqs: int
    timeScale: float
    seed: int
    profile: str


class AutoscalingSpec(TypedDict, total=False):
    minReplicas: int
    maxReplicas: Required[int]
    targetWaitingPerReplica: float


class RateLimit(TypedDict, total=False):
    requestsPerSecond: float


class ModelPoolSpec(TypedDict, total=False):
    model: Required[str]
    endpoint: str
    replicas: int
    image: str
    resources: dict[str, Any]
    vllmArgs: list[str]
    autoscaling: AutoscalingSpec
    simulator: SimulatorSpec
    maxConcurrency: int
    rateLimit: RateLimit
    stream: bool
    router: str
    apiKeySecret: ApiKeySecretRef
    toolChoice: str
    contextWindow: int
    toolCallsInContent: bool
    maxOutputTokens: int


class ModelPoolStatus(TypedDict, total=False):
    phase: str
    readyReplicas: int
    endpoints: list[str]
    conditions: list[Condition]
    observedGeneration: int


class ModelPool(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: Required[ObjectMeta]
    spec: Required[ModelPoolSpec]
    status: ModelPoolStatus


# --------------------------------------------------------------------------- others


class SwarmJobStatus(TypedDict, total=False):
    """What the operator reads back from a SwarmJob's status (it writes the rest)."""

    phase: str
    reason: str
    workflowId: str
    startedAt: str
    conditions: list[Condition]


class DeploymentSpec(TypedDict, total=False):
    replicas: int


class DeploymentStatus(TypedDict, total=False):
    replicas: int
    readyReplicas: int
