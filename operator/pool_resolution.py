"""Which pool a SwarmJob's pool names mean: the names the workers know them by.

A job names pools without a namespace (the CRD refuses ``NAMESPACE/NAME``). ``fast`` in
namespace ``team-a`` is the ModelPool ``team-a/fast`` when one exists (the workers know it by
that name, see ``workerpools``), else a static pool ``fast``. With the operator writing the
workers' pools document, a ModelPool counts once that document lists it: until then (or while
it is left out, with the reason) the job waits with reason PoolNotFound. The start handler
(``swarmjobs``) gives the workflow the resolved names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container

from kswarm.errors import KswarmError, SpecError
from kswarm.llm.pools import qualified_name, split_name
from kswarm.operator.pools_document import PoolsDocument
from kswarm.operator.runtime import Runtime
from kswarm.spec import SwarmJobSpec

__all__ = [
    "PUBLISH_WAIT_SECONDS",
    "PoolMissing",
    "resolve_job_pools",
    "resolve_pool",
    "resolve_pools",
]

PUBLISH_WAIT_SECONDS = 3.0
"""How long a job's start waits for the workers' pools document to take in a new ModelPool."""


class PoolMissing(KswarmError):
    """A pool a job names cannot be served (yet); the message says why. It may be served
    later: the job waits and the start is tried again."""

    retryable = True


def resolve_pool(
    path: str,
    pool: str,
    namespace: str,
    *,
    static: Container[str],
    pool_index: Container[tuple[str, str]],
    publishing: bool,
    document: PoolsDocument | None,
) -> str:
    """The name the workers know the pool ``pool`` of a job in ``namespace`` by.

    The job's namespace's ModelPool comes first (``NAMESPACE/NAME``), then a static pool of
    that name. With ``publishing`` (the operator writes the workers' pools document), a
    ModelPool counts once ``document`` lists it. Raises :class:`SpecError` for a pool of
    another namespace (never allowed) and :class:`PoolMissing` for one that cannot be served.
    """
    owner, name = split_name(pool)
    if owner is not None and owner != namespace:
        raise SpecError(
            path,
            f"names the pool {pool!r} of namespace {owner!r}; a job uses the ModelPools of its "
            f"own namespace ({namespace!r}): give the pool's name only",
        )
    key = qualified_name(namespace, name)
    indexed = (namespace, name) in pool_index
    if not publishing:
        if indexed:
            return key
    elif document is not None and key in document:
        return key
    elif document is not None and key in document.left_out:
        raise PoolMissing(
            f"ModelPool {name!r} in namespace {namespace!r} cannot be served: "
            f"{document.left_out[key]}"
        )
    elif indexed:
        raise PoolMissing(
            f"ModelPool {name!r} in namespace {namespace!r} is not in the workers' pools yet"
        )
    if owner is None and name in static:
        return name
    raise PoolMissing(f"ModelPool {name!r} not found in namespace {namespace!r}")


def resolve_pools(
    spec: SwarmJobSpec,
    namespace: str,
    *,
    static: Container[str],
    pool_index: Container[tuple[str, str]],
    publishing: bool,
    document: PoolsDocument | None,
) -> tuple[SwarmJobSpec, list[str]]:
    """``spec`` with its pools resolved (:func:`resolve_pool`), and why any could not be."""
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for path, pool in (
        ("spec.orchestrator.pool", spec.orchestrator.pool),
        ("spec.subagents.pool", spec.subagents.pool),
    ):
        try:
            resolved[path] = resolve_pool(
                path,
                pool,
                namespace,
                static=static,
                pool_index=pool_index,
                publishing=publishing,
                document=document,
            )
        except PoolMissing as e:
            if str(e) not in missing:
                missing.append(str(e))
            resolved[path] = pool
    out = dataclasses.replace(
        spec,
        orchestrator=dataclasses.replace(
            spec.orchestrator, pool=resolved["spec.orchestrator.pool"]
        ),
        subagents=dataclasses.replace(spec.subagents, pool=resolved["spec.subagents.pool"]),
    )
    return out, missing


async def resolve_job_pools(
    rt: Runtime, spec: SwarmJobSpec, namespace: str, pool_index: Container[tuple[str, str]]
) -> tuple[SwarmJobSpec, list[str]]:
    """:func:`resolve_pools` with what the operator knows now; when a ModelPool is missing from
    the workers' document, one more (bounded) wait for the publisher to catch up."""
    publisher = rt.publisher

    def attempt() -> tuple[SwarmJobSpec, list[str]]:
        return resolve_pools(
            spec,
            namespace,
            static=_StaticPools(rt, publisher.document if publisher else None),
            pool_index=pool_index,
            publishing=publisher is not None,
            document=publisher.document if publisher else None,
        )

    resolved, missing = attempt()
    if missing and publisher is not None:
        await publisher.refresh(PUBLISH_WAIT_SECONDS)
        resolved, missing = attempt()
    return resolved, missing


class _StaticPools:
    """Static pool names: the configured ones and those the static pools file published."""

    def __init__(self, rt: Runtime, document: PoolsDocument | None) -> None:
        self.names = set(rt.config.static_pools) | set(document.static if document else ())

    def __contains__(self, name: object) -> bool:
        return name in self.names
