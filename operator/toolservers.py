"""ToolServer handlers: reach each MCP server, list its tools, and hand the servers to the workers.

A ToolServer's status says what the operator saw the last time it connected (on create, on
change, on operator start and every ``KSWARM_POOL_PROBE_INTERVAL`` seconds, as endpoint pools):
``Ready`` True with the tool list (names as jobs name them, ``SERVER__TOOL``, descriptions and
the side-effect flag from the server's annotations), or ``Ready`` False with the reason
(``Unreachable`` with the server's error, ``InvalidSpec``, ``SecretNotReadable``,
``NameConflict``).

Workers reach the servers themselves. The operator writes one tools document (the tools-file
format of :mod:`kswarm.tools.servers`) into the ConfigMap ``kswarm-tools`` (key ``tools.yaml``)
of its own namespace, listing every ToolServer, on every ToolServer event; a worker started with
``KSWARM_TOOLS_FILE`` follows it as it follows its pools. The workers offer a server's tools as
``NAME__TOOL``, so a name is taken once in the cluster: of two ToolServers with one name in two
namespaces, the older is served and the other reports ``NameConflict``. A token of
``spec.bearerTokenSecret`` is not written to the ConfigMap: the entry names the file
``/etc/kswarm/tool-keys/NAMESPACE.NAME``, where the workers mount the Secret ``kswarm-tool-keys``
(``deploy/worker.yaml``), which the operator writes beside the ConfigMap. The operator needs
``get`` on each Secret a ToolServer names, as for ModelPool keys.

The tools the Ready servers list become names a SwarmJob may use (``Runtime.known_tools``), so a
job naming them is accepted.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import kopf
import yaml

from kswarm.errors import SpecError, ToolServerUnavailable
from kswarm.operator import status as job_status
from kswarm.operator.kube import KubeError
from kswarm.operator.runtime import Runtime, runtime_of
from kswarm.sim import demo_tools
from kswarm.tools.mcp import ToolServers
from kswarm.tools.servers import ToolServerConfig, server_config, server_entry

__all__ = [
    "GROUP",
    "KEYS_DIR",
    "KEYS_SECRET",
    "PLURAL",
    "TOOLS_CONFIGMAP",
    "TOOLS_KEY",
    "VERSION",
    "build_document",
    "index_server",
    "probe_server",
    "publish_servers",
    "register",
]

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kswarm.dev", "v1alpha1", "toolservers"
TOOLS_CONFIGMAP, TOOLS_KEY = "kswarm-tools", "tools.yaml"
KEYS_SECRET = "kswarm-tool-keys"
KEYS_DIR = "/etc/kswarm/tool-keys"
DESCRIPTION_CHARS = 1024

Key = tuple[str, str]


def index_server(
    namespace: str, name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> dict[Key, dict[str, Any]]:
    """Index: (namespace, name) -> spec, status and creation time of every ToolServer."""
    return {
        (namespace, name): {
            "spec": dict(spec),
            "status": dict(status),
            "created": str(meta.get("creationTimestamp") or ""),
        }
    }


def _owners(index: Mapping[Key, Any]) -> dict[str, Key]:
    """Server name -> the ToolServer that holds it (the oldest, then by namespace)."""
    owners: dict[str, Key] = {}
    for key in sorted(index, key=lambda k: (_entry(index, k)["created"], k)):
        owners.setdefault(key[1], key)
    return owners


def _entry(index: Mapping[Key, Any], key: Key) -> dict[str, Any]:
    value = index[key]
    # kopf's index holds a collection of values per key; each ToolServer gives one.
    return dict(next(iter(value)) if not isinstance(value, Mapping) else value)


def key_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def build_document(index: Mapping[Key, Any]) -> tuple[str, list[Key]]:
    """The workers' tools document from every ToolServer, and those that need a token file."""
    servers: list[dict[str, Any]] = []
    keyed: list[Key] = []
    for name, key in sorted(_owners(index).items()):
        spec = dict(_entry(index, key)["spec"])
        secret = spec.pop("bearerTokenSecret", None)
        try:
            config = server_config(name, spec)
        except SpecError as e:
            log.warning("toolserver left out namespace=%s name=%s error=%r", key[0], name, str(e))
            continue
        entry = server_entry(config)
        if secret:
            entry["bearerTokenFile"] = f"{KEYS_DIR}/{key_name(*key)}"
            keyed.append(key)
        servers.append(entry)
    return yaml.safe_dump({"servers": servers}, sort_keys=False), keyed


async def publish_servers(
    memo: kopf.Memo, toolserver_index: kopf.Index[Any, Any], **_: Any
) -> None:
    """Any ToolServer event: rewrite the workers' tools document (and the Secret of tokens)."""
    rt = runtime_of(memo)
    document, keyed = build_document(toolserver_index)
    namespace = rt.config.operator_namespace
    tokens: dict[str, str] = {}
    for key in keyed:
        secret = _entry(toolserver_index, key)["spec"].get("bearerTokenSecret") or {}
        try:
            tokens[key_name(*key)] = await rt.api.read_secret_value(
                key[0], str(secret.get("name")), str(secret.get("key") or "token")
            )
        except KubeError as e:
            log.warning("toolserver token unreadable namespace=%s name=%s: %s", *key, e)
    try:
        if keyed:
            await rt.api.apply_secret(namespace, KEYS_SECRET, tokens)
        await rt.api.apply_config_map(namespace, TOOLS_CONFIGMAP, {TOOLS_KEY: document})
    except KubeError as e:
        raise kopf.TemporaryError(f"cannot write {TOOLS_CONFIGMAP}: {e}", delay=5) from e
    _update_known_tools(rt, toolserver_index)


def _update_known_tools(rt: Runtime, index: Mapping[Key, Any]) -> None:
    """Jobs may name the built-in tools and every tool a Ready server listed."""
    names = set(rt.config.known_tools or demo_tools().names())
    owners = set(_owners(index).values())
    for key in owners:
        status = _entry(index, key)["status"]
        names.update(str(t.get("name")) for t in status.get("tools") or [])
    rt.known_tools = tuple(sorted(names))


async def _config_for_probe(
    rt: Runtime, namespace: str, name: str, spec: Mapping[str, Any]
) -> ToolServerConfig:
    raw = dict(spec)
    secret = raw.pop("bearerTokenSecret", None)
    config = server_config(name, raw)
    if secret:
        token = await rt.api.read_secret_value(
            namespace, str(secret["name"]), str(secret.get("key") or "token")
        )
        headers = {**config.headers, "Authorization": f"Bearer {token.strip()}"}
        config = dataclasses.replace(config, headers=headers)
    return config


async def probe_server(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    namespace: str,
    name: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    toolserver_index: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Connect, list the tools, write Ready and the tool list into the status."""
    rt = runtime_of(memo)
    generation = meta.get("generation")
    owner = _owners(toolserver_index).get(name)
    tools: list[dict[str, Any]] = []
    if owner is not None and owner != (namespace, name):
        ready, reason = "False", "NameConflict"
        message = (
            f"the ToolServer {owner[0]}/{name} already offers tools as {name}__*; rename this one"
        )
    else:
        try:
            config = await _config_for_probe(rt, namespace, name, spec)
            servers = ToolServers([config])
            try:
                listed = await servers.refresh(name)
            finally:
                await servers.close()
            tools = [
                {
                    "name": t.name,
                    "description": t.description[:DESCRIPTION_CHARS],
                    "sideEffects": t.side_effects,
                }
                for t in listed
            ]
            ready, reason, message = "True", "Listed", f"{len(tools)} tools listed"
        except SpecError as e:
            ready, reason, message = "False", "InvalidSpec", str(e)
        except KubeError as e:
            ready, reason, message = "False", "SecretNotReadable", str(e)
        except ToolServerUnavailable as e:
            ready, reason, message = "False", "Unreachable", str(e)
    cond = {"type": "Ready", "status": ready, "reason": reason, "message": message}
    patch.status.update(
        phase="Ready"
        if ready == "True"
        else ("Unreachable" if reason == "Unreachable" else "Pending"),
        toolCount=len(tools),
        tools=tools,
        observedGeneration=generation,
        conditions=job_status.set_conditions(
            status.get("conditions"), [cond], now=rt.now(), generation=generation
        ),
    )
    if status.get("conditions") is None or reason != (status.get("conditions") or [{}])[0].get(
        "reason"
    ):
        log.info(
            "toolserver probed namespace=%s name=%s ready=%s reason=%s tools=%d",
            namespace,
            name,
            ready,
            reason,
            len(tools),
        )


def _handler(fn: Any) -> Any:
    """kopf's callback protocols spell out every keyword it may pass; ours take what they use."""
    return fn


def register(registry: kopf.OperatorRegistry, *, probe_interval: float) -> None:
    """Register the ToolServer handlers on ``registry``; servers are probed again every
    ``probe_interval`` seconds (a server's tool list may change while it runs)."""
    kopf.index(GROUP, VERSION, PLURAL, id="toolserver_index", registry=registry)(
        _handler(index_server)
    )
    kopf.on.event(GROUP, VERSION, PLURAL, id="publish-tools", registry=registry)(
        _handler(publish_servers)
    )
    for cause in (kopf.on.create, kopf.on.update, kopf.on.resume):
        cause(GROUP, VERSION, PLURAL, id="probe", registry=registry, backoff=5)(
            _handler(probe_server)
        )
    kopf.timer(
        GROUP, VERSION, PLURAL, id="reprobe", registry=registry, interval=probe_interval, idle=1
    )(_handler(probe_server))
