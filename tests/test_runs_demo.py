"""With no model configured, a runner serves the demo agents: streamed answers, a tool call and a handoff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from proto.runs import AgentChanged, Handoff, RunCompleted, RunStarted, TextDelta, ToolCallDelta, ToolOutput
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.agent_runner.agents import load_catalog
from services.agent_runner.demo_agents import get_time, get_weather
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.env import service_env
from tests.support.runs import Runs, types


@pytest.fixture
async def demo_runner(nats_server: NatsServer, prefix: str, start_app: Callable[[App], Awaitable[App]]
                      ) -> AgentRunnerApp:
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, RUN_DEMO_TOKEN_DELAY="0.001")
    app = await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(env)))
    assert isinstance(app, AgentRunnerApp)
    return app


def text_of(events: list[object]) -> str:
    return "".join(e.delta for e in events if isinstance(e, TextDelta))


async def test_a_plain_question_streams_a_labelled_multi_sentence_demo_answer(demo_runner: AgentRunnerApp,
                                                                              runs: Runs) -> None:
    events = await runs.run("hello")
    started, completed = events[0], events[-1]
    assert isinstance(started, RunStarted) and started.demo and started.model == "raaf-demo"
    assert isinstance(completed, RunCompleted) and completed.output == text_of(events)
    assert types(events).count("TextDelta") > 40 and completed.output.count(". ") >= 3
    assert completed.usage.completion_tokens > 0


async def test_asking_the_assistant_about_the_weather_runs_the_weather_tool(demo_runner: AgentRunnerApp,
                                                                          runs: Runs) -> None:
    events = await runs.run("What is the weather in Paris?")
    kinds = types(events)
    assert kinds.index("TextDelta") < kinds.index("ToolCallStarted") < kinds.index("ToolCallDelta") \
        < kinds.index("ToolCallFinished") < kinds.index("ToolOutput")
    arguments = "".join(e.delta for e in events if isinstance(e, ToolCallDelta))
    [output] = [e for e in events if isinstance(e, ToolOutput)]
    assert arguments == '{"city":"Paris"}' and output.name == "get_weather" and not output.is_error
    assert output.output == get_weather("Paris")
    completed = events[-1]
    assert isinstance(completed, RunCompleted) and completed.turns == 2
    assert completed.output.startswith(f"The get_weather tool answered: {output.output}.")


async def test_triage_hands_a_billing_question_to_billing_who_answers(demo_runner: AgentRunnerApp,
                                                                      runs: Runs) -> None:
    events = await runs.run("I was charged twice on my invoice", agent="triage")
    [handoff] = [e for e in events if isinstance(e, Handoff)]
    [changed] = [e for e in events if isinstance(e, AgentChanged)]
    assert (handoff.from_agent, handoff.to_agent) == ("triage", "billing")
    assert (changed.previous, changed.agent) == ("triage", "billing")
    completed = events[-1]
    assert isinstance(completed, RunCompleted) and completed.agent == "billing"
    assert completed.output.startswith("Hi, billing here")


def test_the_demo_catalog_is_only_served_without_an_agents_file_tools_module_or_model(tmp_path: Path) -> None:
    demo = load_catalog(AgentRunnerSettings.from_env({}))
    assert list(demo.agents) == ["assistant", "triage", "billing"]
    assert sorted(demo.tools) == ["get_time", "get_weather"] and demo.agents["triage"].handoffs == ["billing"]
    real = load_catalog(AgentRunnerSettings.from_env({"OPENAI_API_KEY": "sk-x"}))
    assert list(real.agents) == ["assistant"] and real.tools == {}
    own_tools = load_catalog(AgentRunnerSettings.from_env({"RAAF_TOOLS_MODULE": "tests.support.tools"}))
    assert list(own_tools.agents) == ["assistant"]


def test_the_demo_tools_answer_deterministically_and_reject_unknown_time_zones() -> None:
    assert get_weather("Oslo") == get_weather("Oslo") and get_weather("Oslo").startswith("Oslo: ")
    assert get_time("UTC").endswith(" UTC")
    with pytest.raises(ValueError, match="unknown time zone"):
        get_time("Mars/Olympus")
