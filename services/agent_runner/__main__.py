"""Run the agent-runner service: ``python -m services.agent_runner`` (``RUN_WORKERS`` > 1: a supervisor of workers)."""

import sys

from services.agent_runner.app import AgentRunnerApp
from services.agent_runner.settings import AgentRunnerSettings
from shared.service.main import run_service
from shared.service.supervisor import WorkerPlan


def workers(settings: AgentRunnerSettings) -> WorkerPlan:
    return WorkerPlan("services.agent_runner", settings.workers, "RUN_WORKERS")


if __name__ == "__main__":
    sys.exit(run_service("agent-runner", AgentRunnerSettings.from_env, AgentRunnerApp, workers))
