"""The scheduler service: durable jobs in Redis, dispatched to workers over NATS."""

from __future__ import annotations

from typing import ClassVar

from services.scheduler.settings import SchedulerSettings
from shared.app import App


class SchedulerApp(App):
    service: ClassVar[str] = "scheduler"
    uses_redis: ClassVar[bool] = True

    def __init__(self, settings: SchedulerSettings) -> None:
        super().__init__(settings)
        self.scheduler_settings = settings
