"""The agent-runner service: runs agents against an OpenAI-compatible endpoint and streams run events."""

from __future__ import annotations

from typing import ClassVar

from services.agent_runner.settings import AgentRunnerSettings
from shared.app import App


class AgentRunnerApp(App):
    service: ClassVar[str] = "agent-runner"

    def __init__(self, settings: AgentRunnerSettings) -> None:
        super().__init__(settings)
        self.runner_settings = settings
