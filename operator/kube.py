"""The operator's own Kubernetes requests, beside kopf's: status patches from running jobs,
the Deployments, Services and autoscalers of managed pools (and whether KEDA is installed), the
Secret a pool names for its API key, and the workers' pools ConfigMap and pool-keys Secret
(with the list of ModelPools they are built from).

kopf watches and patches the objects it handles; everything else goes through here, so the
requests the operator makes on its own are few, named, and easy to count. The official client
is synchronous; each call runs in a worker thread. Errors come out as one small tree:

    KubeError
    ├── KubeNotFound    404: the object is gone (a deleted job, a missing Secret)
    ├── KubeRetryable   429, 5xx, connection errors: try again later
    └── KubeRefused     any other 4xx: forbidden, invalid; retrying will not help
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kswarm.errors import KswarmError

__all__ = [
    "FIELD_MANAGER",
    "USER_AGENT",
    "KubeApi",
    "KubeError",
    "KubeNotFound",
    "KubeRefused",
    "KubeRetryable",
]

log = logging.getLogger(__name__)

FIELD_MANAGER = "kswarm-operator"
USER_AGENT = "kswarm-operator/0.1.0"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

T = TypeVar("T")

SCALED_OBJECTS = ("keda.sh", "v1alpha1", "scaledobjects")
"""Group, version and plural of KEDA's ScaledObject (a custom resource: no typed client)."""


class KubeError(KswarmError):
    """A Kubernetes API request failed. ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(f"{what}: HTTP {status}: {detail}" if status else f"{what}: {detail}")


class KubeNotFound(KubeError):
    """The object does not exist (any more)."""


class KubeRetryable(KubeError):
    """The API server is busy or unreachable; the same request may succeed later."""

    retryable = True


class KubeRefused(KubeError):
    """The request was refused (403, 422, ...); repeating it will not help."""


def check_response(what: str, e: Exception) -> KubeError:
    """Map a client exception to the error tree above."""
    if isinstance(e, ApiException):
        status = int(e.status or 0)
        detail = (e.reason or "").strip()
        body = getattr(e, "body", None)
        if body:
            detail = f"{detail}: {str(body)[:500]}"
        if status == 404:
            return KubeNotFound(what, status, detail)
        if status == 429 or status >= 500 or status == 0:
            return KubeRetryable(what, status, detail)
        return KubeRefused(what, status, detail)
    return KubeRetryable(what, 0, f"{type(e).__name__}: {e}")


def _metadata(
    namespace: str,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An object's ``metadata`` for server-side apply: only the fields given."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


class KubeApi:
    """Async facade over the official client; ``requests`` counts the calls made."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)
        self.extensions = client.ApiextensionsV1Api(api_client)
        self.requests = 0

    @classmethod
    def from_environment(cls) -> KubeApi:
        """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        api_client = client.ApiClient(configuration)
        api_client.user_agent = USER_AGENT
        return cls(api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self.requests += 1
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise check_response(what, e) from e

    # ------------------------------------------------------------------ custom resources

    async def patch_status(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
    ) -> None:
        """Merge-patch ``.status`` of a custom object; :class:`KubeNotFound` once it is gone."""
        await self._call(
            f"patch {plural}/{namespace}/{name}/status",
            self.custom.patch_namespaced_custom_object_status,
            group,
            version,
            namespace,
            plural,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
        )

    async def patch_annotations(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        annotations: Mapping[str, str | None],
    ) -> None:
        """Merge-patch annotations of a custom object (``None`` removes one)."""
        await self._call(
            f"patch {plural}/{namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            {"metadata": {"annotations": dict(annotations)}},
            _content_type=MERGE_PATCH,
        )

    async def list_objects(
        self, group: str, version: str, plural: str, namespaces: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Every custom object of a kind: in the whole cluster, or in ``namespaces`` only."""
        if not namespaces:
            found: Any = await self._call(
                f"list {plural}",
                self.custom.list_cluster_custom_object,
                group,
                version,
                plural,
            )
            return list(found.get("items") or [])
        items: list[dict[str, Any]] = []
        for namespace in namespaces:
            found = await self._call(
                f"list {plural} in {namespace}",
                self.custom.list_namespaced_custom_object,
                group,
                version,
                namespace,
                plural,
            )
            items.extend(found.get("items") or [])
        return items

    # ------------------------------------------------------------------ config maps

    async def apply_config_map(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        """Server-side apply a ConfigMap's ``data`` (creates the ConfigMap when missing)."""
        meta = _metadata(namespace, name, labels=labels, annotations=annotations)
        await self.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        )

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        """A ConfigMap's ``data``; :class:`KubeNotFound` when it does not exist."""
        found = await self._call(
            f"read ConfigMap {namespace}/{name}",
            self.core.read_namespaced_config_map,
            name,
            namespace,
        )
        return dict(found.data or {})

    # ------------------------------------------------------------------ children of pools

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER, force: bool = True
    ) -> None:
        """Server-side apply a Deployment, Service, ConfigMap, Secret, HorizontalPodAutoscaler
        or KEDA ScaledObject we own (creates it when missing).

        ``force`` takes fields over from other managers; without it a field that another
        manager holds at another value is a conflict (:class:`KubeRefused`, HTTP 409).
        """
        kind = obj["kind"]
        meta = obj["metadata"]
        what = f"apply {kind} {meta['namespace']}/{meta['name']}"
        options = {"field_manager": field_manager, "force": force, "_content_type": APPLY_PATCH}
        if kind == "ScaledObject":
            group, version, plural = SCALED_OBJECTS
            await self._call(
                what,
                self.custom.patch_namespaced_custom_object,
                group,
                version,
                meta["namespace"],
                plural,
                meta["name"],
                dict(obj),
                **options,
            )
            return
        fn = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "ConfigMap": self.core.patch_namespaced_config_map,
            "Secret": self.core.patch_namespaced_secret,
            "HorizontalPodAutoscaler": self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
        }[kind]
        await self._call(what, fn, meta["name"], meta["namespace"], dict(obj), **options)

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a Deployment, Service, HorizontalPodAutoscaler or KEDA ScaledObject; ``False``
        when it was already gone (or, for a ScaledObject, when KEDA is not installed)."""
        what = f"delete {kind} {namespace}/{name}"
        try:
            if kind == "ScaledObject":
                group, version, plural = SCALED_OBJECTS
                await self._call(
                    what,
                    self.custom.delete_namespaced_custom_object,
                    group,
                    version,
                    namespace,
                    plural,
                    name,
                )
                return True
            fn = {
                "Deployment": self.apps.delete_namespaced_deployment,
                "Service": self.core.delete_namespaced_service,
                "HorizontalPodAutoscaler": (
                    self.autoscaling.delete_namespaced_horizontal_pod_autoscaler
                ),
            }[kind]
            await self._call(what, fn, name, namespace)
        except KubeNotFound:
            return False
        return True

    async def crd_established(self, name: str) -> bool:
        """Whether the CustomResourceDefinition ``name`` exists and is served."""
        try:
            crd = await self._call(
                f"read CustomResourceDefinition {name}",
                self.extensions.read_custom_resource_definition,
                name,
            )
        except KubeNotFound:
            return False
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    # ------------------------------------------------------------------ secrets

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's ``data``, decoded; :class:`KubeNotFound` when it does not exist,
        :class:`KubeRefused` when the operator may not read it."""
        secret = await self._call(
            f"read secret {namespace}/{name}", self.core.read_namespaced_secret, name, namespace
        )
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """One value of a Secret, decoded; :class:`KubeError` when missing or forbidden."""
        data = await self.read_secret_data(namespace, name)
        if key not in data:
            raise KubeNotFound(f"secret {namespace}/{name}", 404, f"has no key {key!r}")
        return data[key].decode()

    async def apply_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Server-side apply an Opaque Secret's ``data`` (creates the Secret when missing);
        keys this operator applied before and ``data`` lacks are removed."""
        meta = _metadata(namespace, name, labels=labels)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        await self.apply(body)
