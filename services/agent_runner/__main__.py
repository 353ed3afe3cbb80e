"""Run the agent-runner service: ``python -m services.agent_runner``."""

import sys

from services.agent_runner.app import AgentRunnerApp
from services.agent_runner.settings import AgentRunnerSettings
from shared.service.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("agent-runner", AgentRunnerSettings.from_env, AgentRunnerApp))
