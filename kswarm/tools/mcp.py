"""MCP tool servers as tools: a client over stdio or streamable HTTP, through the official SDK.

Each server of a tools file (:mod:`kswarm.tools.servers`) gets one :class:`ServerConnection`:
one MCP session, opened on first need and opened again after the server went away, shared by
every call of the process (JSON-RPC carries many requests at once on one session), with at most
``maxConcurrency`` calls in flight. Its tools (``tools/list``) become :class:`~kswarm.tools.Tool`
objects named ``SERVER__TOOL``, with the server's JSON schema, so the workflows run them as any
other tool, exactly once per idempotency key:

* every ``tools/call`` carries the call's key in the request's ``_meta`` under
  :data:`IDEMPOTENCY_KEY_META` (``kswarm.dev/idempotency-key``), the same key on every attempt,
  so a server with side effects can recognise a call it has already carried out;
* annotations map to the side-effect flag: ``readOnlyHint`` or ``idempotentHint`` mean a call
  may run again; ``destructiveHint`` (over ``idempotentHint``) or no hint mean it has side
  effects;
* a result with ``isError: true`` is :class:`~kswarm.errors.ToolCallFailed`: the model gets
  the server's answer, the ledger records the call as failed with the whole result;
* a server that cannot be reached, drops the connection or passes ``timeoutSeconds`` is
  :class:`~kswarm.errors.ToolServerUnavailable`, naming the server: retried by the job's policy;
* progress notifications go to :attr:`ToolContext.progress` (the activity heartbeats);
* a call cancelled while in flight (the job was cancelled) makes the SDK send
  ``notifications/cancelled`` for it.

Results keep the text content and the structured content both (:func:`result_record`); what
the model sees of a large one is cut by :func:`kswarm.tools.results.for_model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterable
from typing import Any, TextIO, cast

import mcp
import mcp.types as mcp_types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from kswarm.errors import ToolCallFailed, ToolError, ToolServerUnavailable
from kswarm.tools.registry import SERVER_SEPARATOR, Tool, ToolContext, ToolRegistry
from kswarm.tools.servers import ToolServerConfig

__all__ = [
    "IDEMPOTENCY_KEY_META",
    "MAX_NAME",
    "ServerConnection",
    "ToolServers",
    "mcp_tool",
    "offered_name",
    "result_record",
    "side_effects_of",
    "tool_servers",
]

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_META = "kswarm.dev/idempotency-key"
"""The ``_meta`` key of every ``tools/call`` kswarm sends: the call's idempotency key
``JOB/AGENT/STEP/INDEX``, equal on every attempt of one call."""
MAX_NAME = 64
"""The longest function name model APIs accept."""

_UNAVAILABLE_CODES = (-32000, -32001)
"""JSON-RPC codes the SDK raises for a closed connection and a request timeout."""
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def offered_name(server: str, tool: str) -> str:
    """``SERVER__TOOL`` as a valid function name: other characters become ``_``; a name over
    64 characters keeps its head and a hash of the whole, so two long names stay apart."""
    name = f"{server}{SERVER_SEPARATOR}{_BAD_CHARS.sub('_', tool)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}_{digest}"


def side_effects_of(annotations: mcp_types.ToolAnnotations | None) -> bool:
    """False when the server says a call may run again (read-only, or idempotent and not
    destructive); True for a destructive tool (``destructiveHint``, even when idempotent:
    ``git_reset`` of ``mcp-server-git``) and for a tool with no hint."""
    if annotations is None:
        return True
    if annotations.read_only_hint:
        return False
    if annotations.destructive_hint:
        return True
    return not annotations.idempotent_hint


def result_record(server: str, tool: str, result: mcp_types.CallToolResult) -> dict[str, Any]:
    """What the ledger stores of a ``tools/call`` result: every content block and the
    structured content, whole."""
    record: dict[str, Any] = {
        "kind": "mcp",
        "server": server,
        "tool": tool,
        "content": [
            b.model_dump(by_alias=True, mode="json", exclude_none=True) for b in result.content
        ],
    }
    if result.structured_content is not None:
        record["structuredContent"] = result.structured_content
    if result.is_error:
        record["isError"] = True
    return record


def _error_text(record: dict[str, Any]) -> str:
    texts = [b.get("text", "") for b in record["content"] if b.get("type") == "text"]
    return "\n".join(t for t in texts if t) or "the tool reported an error and no text"


def _cause(e: BaseException) -> str:
    """The innermost useful message of ``e`` (the SDK wraps transport errors in groups)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class ServerConnection:
    """One MCP server's session, shared by the process's calls to it.

    The session lives in a task of its own (the SDK's task groups must be left by the task that
    entered them); calls from any task go through it. A session that ended (the server process
    exited, the HTTP server went away) is opened again by the next call.
    """

    def __init__(self, config: ToolServerConfig, *, errlog: TextIO | None = None) -> None:
        self.config = config
        self.errlog = errlog
        """Where a stdio server's standard error goes (this process's when ``None``)."""
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._lock = asyncio.Lock()
        self._client: mcp.Client | None = None
        self._holder: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    def _transport(self) -> Any:
        c = self.config
        if c.url:
            http = create_mcp_http_client(headers=c.http_headers())
            return streamable_http_client(c.url, http_client=http), http
        params = StdioServerParameters(command=c.command or "", args=list(c.args), env=dict(c.env))
        return stdio_client(params, errlog=self.errlog or sys.stderr), None

    async def _hold(self, ready: asyncio.Future[mcp.Client]) -> None:
        try:
            transport, http = self._transport()
            async with contextlib.AsyncExitStack() as stack:
                if http is not None:
                    await stack.enter_async_context(http)
                client = mcp.Client(
                    transport, read_timeout_seconds=self.config.timeout_seconds, cache=None
                )
                async with client:
                    ready.set_result(client)
                    await self._closing.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(ToolServerUnavailable(self.name, _cause(e)))
            elif not isinstance(e, asyncio.CancelledError):
                log.warning("tool server %s: session ended: %s", self.name, _cause(e))
        finally:
            self._client = None

    async def client(self) -> mcp.Client:
        """The open session, opened now if need be."""
        async with self._lock:
            if self._client is not None and self._holder is not None and not self._holder.done():
                return self._client
            if self._closing.is_set():
                raise ToolServerUnavailable(self.name, "the connection is closed")
            ready: asyncio.Future[mcp.Client] = asyncio.get_running_loop().create_future()
            self._holder = asyncio.create_task(self._hold(ready), name=f"mcp {self.name}")
            try:
                async with asyncio.timeout(self.config.timeout_seconds):
                    self._client = await asyncio.shield(ready)
            except TimeoutError:
                # Nobody awaits ``ready`` now: the holder's error on it is retrieved here, not
                # reported as "never retrieved" when the loop collects it.
                ready.add_done_callback(lambda f: f.cancelled() or f.exception())
                self._holder.cancel()
                raise ToolServerUnavailable(
                    self.name, f"no session within {self.config.timeout_seconds:g} s"
                ) from None
            return self._client

    def _drop(self, client: mcp.Client) -> None:
        """Forget a session that failed, so the next call opens a new one."""
        if self._client is client and self._holder is not None:
            self._holder.cancel()
            self._client = None

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server lists (all pages)."""
        client = await self.client()
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            while True:
                page = await client.list_tools(cursor=cursor)
                tools += page.tools
                cursor = page.next_cursor
                if not cursor:
                    return tools
        except MCPError as e:
            self._drop(client)
            raise ToolServerUnavailable(self.name, f"tools/list failed: {e.message}") from None
        except Exception as e:
            self._drop(client)
            raise ToolServerUnavailable(self.name, f"tools/list failed: {_cause(e)}") from None

    async def call(self, tool: str, arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Run ``tool`` once with the call's key in ``_meta``; its :func:`result_record`."""
        report = ctx.progress
        meta = cast(mcp_types.RequestParamsMeta, {IDEMPOTENCY_KEY_META: ctx.key})

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if report is not None:
                report(progress, total, message)

        async with self._slots:
            client = await self.client()
            try:
                result = await client.call_tool(
                    tool,
                    arguments,
                    read_timeout_seconds=self.config.timeout_seconds,
                    progress_callback=on_progress,
                    meta=meta,
                )
            except MCPError as e:
                if e.code in _UNAVAILABLE_CODES:
                    self._drop(client)
                    raise ToolServerUnavailable(self.name, f"{tool}: {e.message}") from None
                raise ToolError(
                    f"tool server {self.name!r} refused {tool}: {e.message} (code {e.code})"
                ) from None
            except (ToolError, asyncio.CancelledError):
                raise
            except Exception as e:  # transport failures and answers that are not JSON-RPC
                self._drop(client)
                raise ToolServerUnavailable(self.name, f"{tool}: {_cause(e)}") from None
        record = result_record(self.name, tool, result)
        if result.is_error:
            raise ToolCallFailed(_error_text(record), record)
        return record

    async def close(self) -> None:
        self._closing.set()
        if self._holder is not None:
            await asyncio.gather(self._holder, return_exceptions=True)


def mcp_tool(connection: ServerConnection, listed: mcp_types.Tool) -> Tool:
    """The :class:`Tool` that calls ``listed`` on ``connection``'s server."""
    config = connection.config
    remote = listed.name

    async def call(args: dict[str, Any], ctx: ToolContext) -> Any:
        return await connection.call(remote, args, ctx)

    return Tool(
        name=offered_name(config.name, remote),
        description=listed.description or listed.title or remote,
        parameters=listed.input_schema,
        fn=call,
        side_effects=side_effects_of(listed.annotations),
        local=not config.long_running,
        server=config.name,
        require_approval=config.requires_approval(remote),
    )


class ToolServers:
    """The connections to a set of tool servers and the tools they offer.

    :meth:`start` connects to every server and lists its tools; a server that cannot be reached
    or lists nothing usable is an error naming it, so a run never starts with tools missing.
    """

    def __init__(
        self, configs: Iterable[ToolServerConfig], *, errlog: TextIO | None = None
    ) -> None:
        self.connections = {c.name: ServerConnection(c, errlog=errlog) for c in configs}
        self.tools: dict[str, list[Tool]] = {}
        """Server name -> its tools, as of the last :meth:`refresh`."""

    async def refresh(self, name: str) -> list[Tool]:
        """List ``name``'s tools again (a server's tool list may change while it runs)."""
        connection = self.connections[name]
        tools: list[Tool] = []
        for listed in await connection.list_tools():
            try:
                tools.append(mcp_tool(connection, listed))
            except ToolError as e:
                log.warning("tool server %s: tool %s left out: %s", name, listed.name, e)
        self.tools[name] = tools
        return tools

    async def start(self) -> None:
        await asyncio.gather(*(self.refresh(n) for n in self.connections))

    def register(self, registry: ToolRegistry) -> ToolRegistry:
        """Add every server's tools to ``registry`` (a name clash is an error)."""
        for tools in self.tools.values():
            for tool in tools:
                registry.register(tool)
        return registry

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections.values()))


@contextlib.asynccontextmanager
async def tool_servers(
    configs: Iterable[ToolServerConfig], *, errlog: TextIO | None = None
) -> AsyncIterator[ToolServers]:
    """Connected servers with their tools listed; every session (and stdio process) closed on
    exit."""
    servers = ToolServers(configs, errlog=errlog)
    try:
        await servers.start()
        yield servers
    finally:
        await servers.close()
