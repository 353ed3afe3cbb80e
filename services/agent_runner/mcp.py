"""The agents' MCP servers: connected at start, closed at stop, their allowed tools offered to their agents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from proto.runs import AgentSpec, handoff_tool_name
from services.agent_runner.agents import AgentCatalog
from services.agent_runner.settings import AgentRunnerSettings
from shared.errors import ConfigurationError, invalid_setting
from shared.runs.mcp import McpServer
from shared.runs.mcp_config import resolve_server
from shared.runs.tools import Tool

log = logging.getLogger("raaf.agent-runner.mcp")


class AgentMcp:
    """One ``McpServer`` per server an agent of the agents file declares; ``tools_for`` is the engine's hook."""

    def __init__(self, catalog: AgentCatalog, servers: Mapping[str, list[McpServer]]) -> None:
        self.catalog = catalog
        self.servers = dict(servers)

    @classmethod
    def from_settings(cls, catalog: AgentCatalog, settings: AgentRunnerSettings) -> AgentMcp:
        """Read each server's named variables now: a missing one is a ``SettingsError`` at start-up."""
        servers: dict[str, list[McpServer]] = {}
        for agent, configs in catalog.mcp_servers.items():
            for config in configs:
                try:
                    spec = resolve_server(config, connect_timeout=settings.mcp_connect_timeout,
                                          call_timeout=settings.mcp_call_timeout)
                except ConfigurationError as exc:
                    raise invalid_setting("RAAF_AGENTS_FILE", settings.agents_file or "",
                                          f"agent {agent!r}: {exc.message}") from None
                servers.setdefault(agent, []).append(McpServer(spec, reconnect_delay=settings.mcp_reconnect_delay))
        return cls(catalog, servers)

    @property
    def all(self) -> list[McpServer]:
        return [server for servers in self.servers.values() for server in servers]

    async def start(self) -> None:
        """Connect every server; wait for each first attempt (bounded by its connect timeout), never fail:
        a server that is down is retried in the background and its tools answer with an error meanwhile."""
        for server in self.all:
            server.start()
        await asyncio.gather(*(server.wait_tried() for server in self.all))
        for server in self.all:
            if not server.connected:
                log.warning("MCP server %s is not reachable yet: %s", server.name, server.last_error)

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.all))

    def tools_for(self, agent: AgentSpec) -> Mapping[str, Tool]:
        """The MCP tools ``agent`` may call now. Only the agents file's own agent gets them: an agent a request
        defines under the same name does not (it is another object)."""
        servers = self.servers.get(agent.name)
        if not servers or self.catalog.agents.get(agent.name) is not agent:
            return {}
        taken = set(agent.tools) | {handoff_tool_name(name) for name in agent.handoffs}
        tools: dict[str, Tool] = {}
        for server in servers:
            for name, tool in server.tools.items():
                if name in taken or name in tools:
                    continue  # the agent's own tools and handoffs come first, then the servers in file order
                tools[name] = tool
        return tools
