"""An agent's MCP servers as the agents file declares them: where, which secrets, which tools, whose approval."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

from proto.runs import HANDOFF_PREFIX, is_agent_name
from shared.errors import ConfigurationError

Approval = Literal["always", "never"]
_SERVER_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class McpServerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[[agents.mcp_servers]]``: a Streamable HTTP ``url``, or a local ``command`` (with ``args``) over stdio.

    ``headers`` and ``env`` map a header (or the child's variable) to the NAME of a runner environment variable
    holding its value: secrets never sit in the file. ``tools`` is the allow-list (None: every tool the server
    lists); ``approval`` maps a tool (or ``"*"``, every other one) to ``always`` / ``never``.
    """

    name: str
    url: str | None = None
    command: str | None = None
    args: list[str] = []
    cwd: str | None = None
    env: dict[str, str] = {}
    headers: dict[str, str] = {}
    tools: list[str] | None = None
    approval: dict[str, Approval] = {}
    tool_prefix: str | None = None  # None: "<name>_"; "" offers the server's own tool names
    connect_timeout: float | None = None  # None: MCP_CONNECT_TIMEOUT
    call_timeout: float | None = None  # None: MCP_CALL_TIMEOUT

    @property
    def prefix(self) -> str:
        return f"{self.name}_" if self.tool_prefix is None else self.tool_prefix

    @property
    def transport(self) -> str:
        return "http" if self.url is not None else "stdio"

    def requires_approval(self, tool: str) -> bool:
        """Whether a call of the server's ``tool`` needs a person's approval (the ``approval`` policy)."""
        return self.approval.get(tool, self.approval.get("*", "never")) == "always"

    def check(self) -> None:
        """``ConfigurationError`` naming what is wrong with the declaration."""
        where = f"MCP server {self.name!r}"
        if not _SERVER_NAME.fullmatch(self.name):
            raise ConfigurationError(f"{where}: the name must be 1-32 letters, digits, '_' or '-'")
        if (self.url is None) == (self.command is None):
            raise ConfigurationError(f"{where}: set exactly one of url (Streamable HTTP) or command (stdio)")
        if self.url is not None:
            if not self.url.startswith(("http://", "https://")):
                raise ConfigurationError(f"{where}: url must start with http:// or https://")
            if self.args or self.env or self.cwd is not None:
                raise ConfigurationError(f"{where}: args, env and cwd are for a stdio server (command)")
        elif self.headers:
            raise ConfigurationError(f"{where}: headers are for a Streamable HTTP server (url)")
        for header, variable in self.headers.items():
            if not _HEADER_NAME.fullmatch(header):
                raise ConfigurationError(f"{where}: {header!r} is not a header name")
            if not _ENV_NAME.fullmatch(variable):
                raise ConfigurationError(f"{where}: header {header} must name an environment variable, "
                                         f"not a value")
        for child, variable in self.env.items():
            if not _ENV_NAME.fullmatch(child) or not _ENV_NAME.fullmatch(variable):
                raise ConfigurationError(f"{where}: env maps a variable name to the name of a runner variable")
        prefix = self.prefix
        if prefix and not re.fullmatch(r"[A-Za-z0-9_-]*", prefix):
            raise ConfigurationError(f"{where}: tool_prefix may hold only letters, digits, '_' or '-'")
        for tool in self.tools or []:
            if not is_agent_name(prefix + tool) or (prefix + tool).startswith(HANDOFF_PREFIX):
                raise ConfigurationError(f"{where}: tool {tool!r} cannot be offered as {prefix + tool!r} "
                                         f"(1-48 letters, digits, '_' or '-', not starting {HANDOFF_PREFIX!r})")
        if self.tools is not None:
            unknown = sorted(set(self.approval) - set(self.tools) - {"*"})
            if unknown:
                raise ConfigurationError(f"{where}: approval names tools outside its allow-list: "
                                         f"{', '.join(unknown)}")
        for label, value in (("connect_timeout", self.connect_timeout), ("call_timeout", self.call_timeout)):
            if value is not None and not 0 < value <= 3600:
                raise ConfigurationError(f"{where}: {label} must be within (0, 3600] seconds")


@dataclass(frozen=True)
class McpServerSpec:
    """A checked declaration with its secrets read from the environment, and its timeouts settled."""

    config: McpServerConfig
    connect_timeout: float
    call_timeout: float
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # values are secrets: never shown
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.name


def resolve_server(config: McpServerConfig, *, connect_timeout: float, call_timeout: float,
                   environ: Mapping[str, str] | None = None) -> McpServerSpec:
    """Check ``config`` and read the variables it names; ``ConfigurationError`` names a missing one."""
    config.check()
    environ = os.environ if environ is None else environ

    def read(variables: Mapping[str, str], what: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for key, variable in variables.items():
            value = environ.get(variable)
            if value is None or value == "":
                raise ConfigurationError(f"MCP server {config.name!r}: {what} {key} names the environment "
                                         f"variable {variable}, which is not set")
            values[key] = value
        return values

    return McpServerSpec(config=config,
                         connect_timeout=config.connect_timeout or connect_timeout,
                         call_timeout=config.call_timeout or call_timeout,
                         headers=read(config.headers, "header"), env=read(config.env, "env"))
