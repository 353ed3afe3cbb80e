"""Agents files, tools modules and run settings: schemas come from signatures, and every mistake names its variable."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import pytest

from raaf import Agent, function_tool, tool
from raaf.errors import BadRequestError, ToolError
from services.agent_runner.agents import load_catalog
from services.agent_runner.settings import AgentRunnerSettings
from shared.errors import SettingsError
from shared.runs.tools import tools_of
from tests.support.env import ROOT


def settings(tmp_path: Path, agents: str | None, tools: str | None = "tests.support.tools", suffix: str = ".toml",
             **extra: str) -> AgentRunnerSettings:
    env = dict(extra)
    if agents is not None:
        path = tmp_path / f"agents{suffix}"
        path.write_text(agents)
        env["RAAF_AGENTS_FILE"] = str(path)
    if tools is not None:
        env["RAAF_TOOLS_MODULE"] = tools
    return AgentRunnerSettings.from_env(env)


def test_a_tool_schema_comes_from_the_signature_and_arguments_are_validated() -> None:
    def book(city: str, nights: Annotated[int, msgspec.Meta(ge=1, description="how many")] = 1,
             room: Literal["single", "double"] = "double") -> str:
        """Book a hotel.

        Longer text the model does not need."""
        return f"{city}:{nights}:{room}"

    booked = function_tool(book)
    assert booked.description == "Book a hotel."
    assert booked.parameters == {
        "type": "object", "additionalProperties": False, "required": ["city"],
        "properties": {"city": {"type": "string"},
                       "nights": {"type": "integer", "minimum": 1, "description": "how many", "default": 1},
                       "room": {"enum": ["double", "single"], "default": "double"}}}
    assert booked.parse('{"city": "Oslo"}') == {"city": "Oslo", "nights": 1, "room": "double"}
    for bad in ('{"nights": 2}', '{"city": "Oslo", "nights": 0}', '{"city": "Oslo", "pets": 1}', "[1"):
        with pytest.raises(ToolError):
            booked.parse(bad)
    with pytest.raises(BadRequestError):
        function_tool(lambda *args: None, name="variadic")
    with pytest.raises(BadRequestError):
        function_tool(book, name="transfer_to_x")


def test_marked_functions_are_the_tools_of_a_module_else_its_public_functions() -> None:
    module = types.ModuleType("fake_tools")

    def helper() -> None: ...

    @tool(name="lookup", description="Find it.")
    def find(key: str) -> str:
        return key

    helper.__module__ = find.__module__ = "fake_tools"
    module.helper, module.find = helper, find  # type: ignore[attr-defined]
    assert list(tools_of(module)) == ["lookup"]
    plain = types.ModuleType("plain_tools")
    plain.helper = helper  # type: ignore[attr-defined]
    helper.__module__ = "plain_tools"
    assert list(tools_of(plain)) == ["helper"]


def test_the_runner_serves_the_built_in_assistant_without_an_agents_file(tmp_path: Path) -> None:
    catalog = load_catalog(settings(tmp_path, None, tools=None, OPENAI_API_KEY="sk-test"))  # not the demo's
    assert list(catalog.agents) == ["assistant"] and catalog.tools == {}


def test_an_agents_file_in_json_works_too(tmp_path: Path) -> None:
    body = '{"agents": [{"name": "a", "tools": ["add"], "handoffs": ["b"]}, {"name": "b"}]}'
    catalog = load_catalog(settings(tmp_path, body, suffix=".json"))
    assert sorted(catalog.agents) == ["a", "b"] and catalog.agents["a"].tools == ["add"]


@pytest.mark.parametrize("agents, reason", [
    ('[[agents]]\nname = "a"\ntools = ["nope"]\n', "unknown tool 'nope'"),
    ('[[agents]]\nname = "a"\nhandoffs = ["ghost"]\n', "unknown agent 'ghost'"),
    ('[[agents]]\nname = "a"\n[[agents]]\nname = "a"\n', "two agents are named 'a'"),
    ('[[agents]]\nname = "a b"\n', "must be 1-48"),
    ('[[agents]]\nname = "a"\ntemperature = 5.0\n', "temperature"),
    ('[[agents]]\nname = "a"\ncolour = "red"\n', "colour"),
    ("[[agents]\n", "invalid agents file"),
])
def test_a_bad_agents_file_is_a_settings_error_naming_the_variable(tmp_path: Path, agents: str, reason: str
                                                                   ) -> None:
    with pytest.raises(SettingsError) as error:
        load_catalog(settings(tmp_path, agents))
    assert error.value.variable == "RAAF_AGENTS_FILE" and reason in str(error.value)


def test_a_tools_module_that_cannot_be_imported_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        load_catalog(settings(tmp_path, None, tools="no.such.module"))
    assert error.value.variable == "RAAF_TOOLS_MODULE"


@pytest.mark.parametrize("variable, value", [
    ("RUN_MAX_INPUT_BYTES", "lots"), ("RUN_LEASE_TTL", "0"), ("RUN_RETRY_COUNT", "-1"),
    ("RUN_EVENTS_MAX_AGE", "0"), ("ASYNC_POOL_SIZE", "0"), ("STREAMING_TIMEOUT", "nan"),
])
def test_bad_run_settings_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        AgentRunnerSettings.from_env({variable: value})
    assert error.value.variable == variable


def test_the_runner_process_exits_with_one_line_when_its_agents_file_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text('[[agents]]\nname = "a"\ntools = ["missing_tool"]\n')
    env = {**os.environ, "RAAF_AGENTS_FILE": str(path), "NATS_URL": "nats://127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "services.agent_runner"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "RAAF_AGENTS_FILE" in result.stderr


def test_python_agents_send_themselves_and_the_agents_they_hand_off_to() -> None:
    billing = Agent(name="billing", instructions="Invoices.")
    triage = Agent(name="triage", handoffs=[billing, "support"], tools=["add"])
    specs = {spec.name: spec for spec in triage.specs()}
    assert set(specs) == {"triage", "billing"} and specs["triage"].handoffs == ["billing", "support"]
    with pytest.raises(BadRequestError):
        Agent(name="has space")
    with pytest.raises(BadRequestError):
        Agent(name="a", handoffs=[Agent(name="b"), Agent(name="b", instructions="another b")]).specs()
