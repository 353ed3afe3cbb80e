"""Run the scheduler service: ``python -m services.scheduler``."""

import sys

from services.scheduler.app import SchedulerApp
from services.scheduler.settings import SchedulerSettings
from shared.service.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("scheduler", SchedulerSettings.from_env, SchedulerApp))
