"""An agent's MCP servers in the agents file: what is accepted, and the clear start-up errors for the rest."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.agent_runner.agents import load_catalog
from services.agent_runner.mcp import AgentMcp
from services.agent_runner.settings import AgentRunnerSettings
from shared.errors import SettingsError
from shared.runs.mcp_config import McpServerConfig, resolve_server

AGENT = '[[agents]]\nname = "a"\n[[agents.mcp_servers]]\nname = "docs"\n'


def settings(tmp_path: Path, agents: str, **extra: str) -> AgentRunnerSettings:
    path = tmp_path / "agents.toml"
    path.write_text(agents)
    return AgentRunnerSettings.from_env({"RAAF_AGENTS_FILE": str(path), "OPENAI_API_KEY": "sk-test", **extra})


def test_an_agent_declares_its_mcp_servers_beside_its_other_fields(tmp_path: Path) -> None:
    catalog = load_catalog(settings(tmp_path, AGENT + 'url = "http://mcp.local/mcp"\ntools = ["search"]\n'
                                    '[[agents.mcp_servers]]\nname = "files"\ncommand = "files-mcp"\n'
                                    'args = ["--root", "/srv"]\napproval = { "*" = "always" }\n'))
    docs, files = catalog.mcp_servers["a"]
    assert (docs.url, docs.tools, docs.transport) == ("http://mcp.local/mcp", ["search"], "http")
    assert (files.command, files.args, files.transport) == ("files-mcp", ["--root", "/srv"], "stdio")
    assert files.requires_approval("rm") and not docs.requires_approval("search")
    assert "mcp_servers" not in catalog.agents["a"].__struct_fields__  # not a wire field of AgentSpec


@pytest.mark.parametrize("declaration, reason", [
    ('url = "http://x/mcp"\ncommand = "y"\n', "exactly one of url"),
    ('tools = ["a"]\n', "exactly one of url"),
    ('url = "ftp://x/mcp"\n', "http:// or https://"),
    ('url = "http://x/mcp"\nheaders = { Authorization = "Bearer abc" }\n', "must name an environment variable"),
    ('command = "y"\nheaders = { Authorization = "TOKEN" }\n', "headers are for a Streamable HTTP server"),
    ('url = "http://x/mcp"\ntools = ["a"]\napproval = { b = "always" }\n', "outside its allow-list: b"),
    ('url = "http://x/mcp"\napproval = { b = "sometimes" }\n', "invalid agents file"),
    ('url = "http://x/mcp"\ncall_timeout = 0\n', "call_timeout"),
    ('url = "http://x/mcp"\ncolour = "red"\n', "colour"),
    ('url = "http://x/mcp"\n[[agents.mcp_servers]]\nname = "docs"\nurl = "http://y/mcp"\n', "two MCP servers"),
])
def test_a_bad_mcp_server_declaration_is_a_settings_error_naming_the_agents_file(
        tmp_path: Path, declaration: str, reason: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_catalog(settings(tmp_path, AGENT + declaration))
    assert error.value.variable == "RAAF_AGENTS_FILE" and reason in str(error.value)


def test_a_header_variable_that_is_not_set_stops_the_start_and_names_the_variable(tmp_path: Path) -> None:
    variable = f"UNSET_{uuid.uuid4().hex[:8].upper()}"
    s = settings(tmp_path, AGENT + f'url = "http://x/mcp"\nheaders = {{ Authorization = "{variable}" }}\n')
    with pytest.raises(SettingsError) as error:
        AgentMcp.from_settings(load_catalog(s), s)
    assert error.value.variable == "RAAF_AGENTS_FILE"
    assert f"header Authorization names the environment variable {variable}, which is not set" in str(error.value)


def test_secrets_are_read_from_the_named_variables_and_never_shown() -> None:
    config = McpServerConfig(name="docs", url="http://x/mcp", headers={"Authorization": "DOCS_TOKEN"})
    spec = resolve_server(config, connect_timeout=3, call_timeout=7,
                          environ={"DOCS_TOKEN": "Bearer s3cret"})
    assert spec.headers == {"Authorization": "Bearer s3cret"}
    assert (spec.connect_timeout, spec.call_timeout) == (3, 7)
    assert "s3cret" not in repr(spec)


def test_a_servers_own_timeouts_win_over_the_runner_settings() -> None:
    config = McpServerConfig(name="docs", url="http://x/mcp", connect_timeout=1.5, call_timeout=300)
    spec = resolve_server(config, connect_timeout=10, call_timeout=60, environ={})
    assert (spec.connect_timeout, spec.call_timeout) == (1.5, 300)


@pytest.mark.parametrize("variable, value", [
    ("MCP_CONNECT_TIMEOUT", "0"), ("MCP_CALL_TIMEOUT", "soon"), ("MCP_RECONNECT_DELAY", "-1"),
])
def test_bad_mcp_settings_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        AgentRunnerSettings.from_env({variable: value})
    assert error.value.variable == variable
