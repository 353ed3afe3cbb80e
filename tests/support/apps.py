"""The five services' apps by name, each made from an environment (as ``python -m services NAME`` makes it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.chat import ChatApp, ChatSettings
from services.gateway import GatewayApp, GatewaySettings
from services.metrics import MetricsApp, MetricsSettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.service.app import App

FACTORIES: dict[str, Callable[[dict[str, str]], App]] = {
    "gateway": lambda env: GatewayApp(GatewaySettings.from_env(env)),
    "agent-runner": lambda env: AgentRunnerApp(AgentRunnerSettings.from_env(env)),
    "chat": lambda env: ChatApp(ChatSettings.from_env(env)),
    "scheduler": lambda env: SchedulerApp(SchedulerSettings.from_env(env)),
    "metrics": lambda env: MetricsApp(MetricsSettings.from_env(env)),
}

StartApp = Callable[[App], Awaitable[App]]
