"""The agent-runner service."""

from services.agent_runner.app import AgentRunnerApp
from services.agent_runner.settings import AgentRunnerSettings

__all__ = ["AgentRunnerApp", "AgentRunnerSettings"]
