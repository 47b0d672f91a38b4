"""A SwarmJob's answer key from a ConfigMap of its namespace, read before its workflow starts.

``spec.evaluation.answerKey.configMap {name, key}`` names a key of a ConfigMap's ``data``
holding the answer key as a file would (JSON or YAML: rows, an object with rows or text, or
plain text; see :mod:`kswarm.rollouts.answer_keys`). The operator reads it once, when it
starts the job, and passes it to the workflow inline, so the workers never need the Kubernetes
API and every sample of a rollout group is scored against the same key.

A ConfigMap or key that is missing keeps the job Pending (reason ``AnswerKeyNotFound``, the
message naming the ConfigMap and the key) and the job starts once it appears: that is how a
Pod treats a missing ConfigMap it mounts, and how this operator treats a missing pool, so
``kubectl apply -f dir/`` works in any order. Content that is not a key document fails the job
(reason ``InvalidAnswerKey``): waiting would not fix it, and the job is immutable. A read the
API server refuses (the operator's RBAC lacks ``get configmaps``) waits too, with the refusal
in the message, since fixing the RBAC lets the job start.
"""

from __future__ import annotations

from kswarm.operator.kube import KubeApi, KubeNotFound, KubeRefused
from kswarm.rollouts.answer_keys import (
    CONFIG_MAP_FIELD,
    AnswerKeyNotFound,
    config_map_ref,
    inline_config_map_key,
)
from kswarm.spec import SwarmJobSpec

__all__ = ["read_answer_key"]


async def read_answer_key(api: KubeApi, spec: SwarmJobSpec, namespace: str) -> SwarmJobSpec:
    """``spec`` with its ConfigMap answer key read from ``namespace`` and inlined.

    Raises :class:`~kswarm.rollouts.answer_keys.AnswerKeyNotFound` (wait) or
    :class:`~kswarm.errors.SpecError` (fail), as the module says.
    """
    ref = config_map_ref(spec)
    if ref is None:
        return spec
    try:
        data: dict[str, str] | None = await api.read_config_map(namespace, ref.name)
    except KubeNotFound:
        data = None
    except KubeRefused as e:
        raise AnswerKeyNotFound(
            f"{CONFIG_MAP_FIELD}: cannot read ConfigMap {namespace}/{ref.name} (key "
            f"{ref.key!r}): {e}; the job starts once the operator may read it"
        ) from e
    return inline_config_map_key(spec, namespace=namespace, data=data)
