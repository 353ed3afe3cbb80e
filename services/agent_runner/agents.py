"""The agents a runner serves: from the agents file, the built-in assistant, and those a request defines."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from proto.runs import AgentSpec, RunRequest, handoff_tool_name, is_agent_name
from services.agent_runner.demo_agents import DEMO_AGENTS, demo_tools
from services.agent_runner.errors import AgentConfigError, BadRunRequest, agent_not_found
from services.agent_runner.settings import AgentRunnerSettings
from shared.errors import ConfigurationError, StreamingError, invalid_setting
from shared.runs.approvals import ApprovalRule
from shared.runs.mcp_config import McpServerConfig
from shared.runs.stream_processor import StreamProcessor, load_processor
from shared.runs.tools import Tool, load_tools

DEFAULT_AGENT = "assistant"
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."


class AgentsFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The agents file: ``[[agents]]`` tables (TOML) or ``{"agents": [...]}`` (JSON)."""

    agents: list[AgentSpec]
    # Tools safe to run again when a runner died while they ran (besides those marked ``@tool(idempotent=True)``).
    idempotent_tools: list[str] = []
    # ``[[approval]]``: which tool calls wait for a person's decision (docs/approvals.md).
    approval: list[ApprovalRule] = []


def read_agents_file(path: str) -> list[AgentSpec]:
    return read_agents(path)[0].agents


def read_agents(path: str) -> tuple[AgentsFile, dict[str, list[McpServerConfig]]]:
    """The file's agents and settings, and the MCP servers each agent declares (``[[agents.mcp_servers]]``, not a
    wire field)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise AgentConfigError(f"cannot read agents file {path}: {exc.strerror}") from None
    servers: dict[str, list[McpServerConfig]] = {}
    try:
        raw = msgspec.json.decode(data) if file.suffix == ".json" else msgspec.toml.decode(data)
        if isinstance(raw, dict) and isinstance(raw.get("agents"), list):
            for entry in raw["agents"]:
                if isinstance(entry, dict) and "mcp_servers" in entry:
                    declared = entry.pop("mcp_servers")
                    servers[str(entry.get("name"))] = msgspec.convert(declared, type=list[McpServerConfig])
        config = msgspec.convert(raw, type=AgentsFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise AgentConfigError(f"invalid agents file {path}: {exc}") from None
    # AgentSpec is a wire type and tolerates unknown fields; a file should not: a typo would be ignored.
    for entry in raw["agents"]:
        unknown = sorted(set(entry) - set(AgentSpec.__struct_fields__) - {"type"})
        if unknown:
            raise AgentConfigError(f"invalid agents file {path}: agent {entry.get('name')!r} has unknown "
                                   f"field(s) {', '.join(unknown)}")
    for agent_name, declared in servers.items():
        names = [server.name for server in declared]
        if len(set(names)) != len(names):
            raise AgentConfigError(f"invalid agents file {path}: agent {agent_name!r} declares two MCP servers "
                                   "with one name")
        for server in declared:
            try:
                server.check()
            except ConfigurationError as exc:
                raise AgentConfigError(f"invalid agents file {path}: agent {agent_name!r}: {exc.message}") from None
    return config, servers


class AgentCatalog:
    """Configured agents and tools; ``resolve()`` adds a request's own agents and checks every reference."""

    def __init__(self, agents: Iterable[AgentSpec], tools: Mapping[str, Tool], *, max_inline_agents: int = 16,
                 mcp_servers: Mapping[str, list[McpServerConfig]] | None = None,
                 idempotent_tools: Iterable[str] = (), approvals: Iterable[ApprovalRule] = ()) -> None:
        self.tools = dict(tools)
        self.approvals = list(approvals)
        for rule in self.approvals:
            try:
                rule.check()
            except ConfigurationError as exc:
                raise AgentConfigError(exc.message) from None
        for name in idempotent_tools:
            if name not in self.tools:
                raise AgentConfigError(f"idempotent_tools names unknown tool {name!r}")
            self.tools[name] = dataclasses.replace(self.tools[name], idempotent=True)
        self.mcp_servers = dict(mcp_servers or {})  # per agent of the file: the MCP servers it declares
        self.max_inline_agents = max_inline_agents
        self.agents: dict[str, AgentSpec] = {}
        for agent in agents:
            if agent.name in self.agents:
                raise AgentConfigError(f"two agents are named {agent.name!r}")
            self.agents[agent.name] = agent
        if not self.agents:
            self.agents[DEFAULT_AGENT] = AgentSpec(name=DEFAULT_AGENT, instructions=DEFAULT_INSTRUCTIONS)
        try:
            self._check(self.agents)
        except BadRunRequest as exc:
            raise AgentConfigError(exc.message) from None

    def resolve(self, request: RunRequest) -> dict[str, AgentSpec]:
        """The agents this run may use, by name; typed errors for unknown or inconsistent ones."""
        if not request.agents:
            if request.agent not in self.agents:
                raise agent_not_found(request.agent, list(self.agents))
            return self.agents
        if len(request.agents) > self.max_inline_agents:
            raise BadRunRequest(f"{len(request.agents)} agents in one request; the limit is "
                                f"{self.max_inline_agents} (RUN_MAX_INLINE_AGENTS)")
        agents = dict(self.agents)
        seen: set[str] = set()
        for agent in request.agents:
            if agent.name in seen:
                raise BadRunRequest(f"two agents in the request are named {agent.name!r}")
            seen.add(agent.name)
            if agent.base_url is not None or agent.api_key_env is not None:
                # A caller must not point the runner (and its keys) at an endpoint of its choosing.
                raise BadRunRequest(f"agent {agent.name!r}: only agents in the agents file may set "
                                    "base_url or api_key_env")
            agents[agent.name] = agent
        if request.agent not in agents:
            raise agent_not_found(request.agent, list(agents))
        self._check({name: agents[name] for name in seen}, agents)
        return agents

    def _check(self, agents: Mapping[str, AgentSpec], everyone: Mapping[str, AgentSpec] | None = None) -> None:
        everyone = agents if everyone is None else everyone
        for agent in agents.values():
            if not is_agent_name(agent.name):
                raise BadRunRequest(f"agent name {agent.name!r} must be 1-48 letters, digits, '_' or '-'")
            for name in agent.tools:
                if name not in self.tools:
                    raise BadRunRequest(f"agent {agent.name!r} uses unknown tool {name!r}; "
                                        f"tools: {', '.join(sorted(self.tools)) or 'none (set RAAF_TOOLS_MODULE)'}")
            for target in agent.handoffs:
                if target not in everyone:
                    raise BadRunRequest(f"agent {agent.name!r} hands off to unknown agent {target!r}")
                if handoff_tool_name(target) in self.tools:
                    raise BadRunRequest(f"tool {handoff_tool_name(target)!r} clashes with a handoff")
            if agent.max_turns is not None and agent.max_turns < 1:
                raise BadRunRequest(f"agent {agent.name!r}: max_turns must be >= 1")
            if agent.temperature is not None and not 0 <= agent.temperature <= 2:
                raise BadRunRequest(f"agent {agent.name!r}: temperature must be within 0..2")
            if agent.max_tokens is not None and agent.max_tokens < 1:
                raise BadRunRequest(f"agent {agent.name!r}: max_tokens must be >= 1")


def load_catalog(settings: AgentRunnerSettings) -> AgentCatalog:
    """The runner's agents and tools; any problem is a ``SettingsError`` naming the variable.

    With the demo model and neither agents file nor tools module, the demo agents and their tools."""
    if settings.demo and settings.agents_file is None and settings.tools_module is None:
        return AgentCatalog(DEMO_AGENTS, demo_tools(), max_inline_agents=settings.max_inline_agents)
    tools: dict[str, Tool] = {}
    if settings.tools_module is not None:
        try:
            tools = load_tools(settings.tools_module)
        except ImportError as exc:
            raise invalid_setting("RAAF_TOOLS_MODULE", settings.tools_module, f"cannot import it ({exc})") from None
        except StreamingError as exc:
            raise invalid_setting("RAAF_TOOLS_MODULE", settings.tools_module, exc.message) from None
    try:
        config, servers = (read_agents(settings.agents_file) if settings.agents_file is not None
                           else (AgentsFile(agents=[]), {}))
        return AgentCatalog(config.agents, tools, max_inline_agents=settings.max_inline_agents, mcp_servers=servers,
                            idempotent_tools=config.idempotent_tools, approvals=config.approval)
    except AgentConfigError as exc:
        raise invalid_setting("RAAF_AGENTS_FILE", settings.agents_file or "", exc.message) from None


def load_stream_processor(settings: AgentRunnerSettings) -> StreamProcessor | None:
    """The ``RAAF_STREAM_PROCESSOR`` instance, built with ``STREAMING_CHUNK_SIZE`` / ``STREAMING_BUFFER_SIZE``."""
    if settings.stream_processor is None:
        return None
    try:
        return load_processor(settings.stream_processor, chunk_size=settings.chunk_size,
                              buffer_size=settings.buffer_size)
    except ConfigurationError as exc:
        raise invalid_setting("RAAF_STREAM_PROCESSOR", settings.stream_processor, exc.message) from None
