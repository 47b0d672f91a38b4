"""A worker's MCP tool servers, from a tools file it follows while it runs.

``kswarm worker`` with ``KSWARM_TOOLS_FILE`` (on Kubernetes the ConfigMap ``kswarm-tools`` the
operator writes from the ToolServer objects) reads the file's content again every
``KSWARM_POOLS_POLL_SECONDS``, as it reads its pools file, and :class:`ServedTools` makes the
activities' tool registry follow it:

* a new server is connected and its tools (``tools/list``) join the registry;
* a changed server gets a new session and its tools are listed again;
* a removed server's tools leave the registry, then its session closes;
* a server that cannot be reached is left out with one log line naming it, and tried again at
  every look until it answers; the tools of the others are served meanwhile;
* every twentieth look lists the servers' tools again, so a tool a server adds or drops while
  it runs is offered or withdrawn.

The registry is replaced whole (never changed in place), so a call that has looked up its tool
keeps it while the registry moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from kswarm.errors import ConfigError, ToolServerUnavailable
from kswarm.tools import ToolRegistry
from kswarm.tools.mcp import ServerConnection, ToolServers
from kswarm.tools.servers import ToolServerConfig, parse_tools_text
from kswarm.workflows.resources import ActivityResources

__all__ = ["ServedTools", "ToolsFile", "follow_tools_file"]

log = logging.getLogger(__name__)


class ToolsFile:
    """A tools file, read whenever its content changed (a ConfigMap volume swaps a symlink)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._text: bytes | None = None

    def read(self) -> list[ToolServerConfig] | None:
        """The servers when the content changed since the last read, else ``None``.

        Raises :class:`OSError` when it cannot be read and :class:`ConfigError` when invalid."""
        with open(self.path, "rb") as fh:
            text = fh.read()
        if text == self._text:
            return None
        servers = parse_tools_text(text, self.path)
        self._text = text
        return servers


class ServedTools:
    """The MCP servers whose tools the activities offer, on top of the process's own tools."""

    def __init__(self, activities: ActivityResources, base: ToolRegistry) -> None:
        self.activities = activities
        self.base = base
        self.servers = ToolServers(())
        self.waiting: dict[str, str] = {}
        """Servers left out because they could not be reached -> why."""
        self.configs: list[ToolServerConfig] | None = None
        """The servers of the last tools file applied."""

    async def apply(self, configs: Iterable[ToolServerConfig]) -> None:
        """Serve exactly ``configs`` from now on (servers waiting to be reached are tried)."""
        wanted = {c.name: c for c in configs}
        old = self.servers.connections
        kept = {n: c for n, c in old.items() if wanted.get(n) == c.config and n not in self.waiting}
        fresh = {n: ServerConnection(c) for n, c in wanted.items() if n not in kept}
        servers = ToolServers(())
        servers.connections = {**kept, **fresh}
        servers.tools = {n: self.servers.tools[n] for n in kept if n in self.servers.tools}
        waiting: dict[str, str] = {}
        for name in fresh:
            try:
                await servers.refresh(name)
            except ToolServerUnavailable as e:
                waiting[name] = str(e)
                if self.waiting.get(name) != str(e):
                    log.warning("tool server %s left out until it answers: %s", name, e)
        for name in self.waiting.keys() - waiting.keys():
            if name in wanted:
                log.info("tool server %s answers now", name)
        registry = ToolRegistry(dict(self.base.tools))
        servers.register(registry)
        self.activities.tools = registry
        self.servers, self.waiting = servers, waiting
        gone = [c for n, c in old.items() if servers.connections.get(n) is not c]
        await asyncio.gather(*(c.close() for c in gone))
        if fresh or gone:
            log.info(
                "tool servers changed serving=%s waiting=%s tools=%d",
                ",".join(n for n in servers.connections if n not in waiting) or "-",
                ",".join(waiting) or "-",
                len(registry.tools),
            )

    async def relist(self) -> None:
        """List every served server's tools again; the registry follows what changed."""
        changed = False
        for name in list(self.servers.connections):
            if name in self.waiting:
                continue
            before = [(t.name, t.parameters) for t in self.servers.tools.get(name, [])]
            try:
                after = await self.servers.refresh(name)
            except ToolServerUnavailable as e:
                log.warning("tool server %s: tools not listed again, keeping them: %s", name, e)
                continue
            if [(t.name, t.parameters) for t in after] != before:
                changed = True
                log.info("tool server %s: its tools changed, now %d", name, len(after))
        if changed:
            registry = ToolRegistry(dict(self.base.tools))
            self.servers.register(registry)
            self.activities.tools = registry

    async def apply_file(self, tools_file: ToolsFile) -> None:
        """Serve what ``tools_file`` holds now; a file that cannot be read or is invalid is
        logged, and the servers stay as they are."""
        try:
            configs = await asyncio.to_thread(tools_file.read)
        except (OSError, ConfigError) as e:
            log.warning("tools file not applied, keeping the current servers: %s", e)
            return
        if configs is not None:
            self.configs = configs
            await self.apply(configs)

    async def close(self) -> None:
        await self.servers.close()


async def follow_tools_file(
    tools_file: ToolsFile, served: ServedTools, *, interval: float, relist_every: int = 20
) -> None:
    """Every ``interval`` seconds, read ``tools_file``; apply it when it changed or a server is
    still waiting to be reached. Every ``relist_every`` looks, list the servers' tools again (a
    server's tool list may change while it runs). Runs until cancelled."""
    complaint: str | None = None
    configs = served.configs
    looks = 0
    while True:
        looks += 1
        if looks % relist_every == 0:
            await served.relist()
        try:
            changed = await asyncio.to_thread(tools_file.read)
        except (OSError, ConfigError) as e:
            if complaint != str(e):
                log.warning("tools file not applied, keeping the current servers: %s", e)
            complaint = str(e)
            changed = None
        else:
            complaint = None
        if changed is not None:
            configs = served.configs = changed
        if configs is not None and (changed is not None or served.waiting):
            await served.apply(configs)
        await asyncio.sleep(interval)
