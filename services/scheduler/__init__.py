"""The scheduler service."""

from services.scheduler.app import SchedulerApp
from services.scheduler.settings import SchedulerSettings

__all__ = ["SchedulerApp", "SchedulerSettings"]
