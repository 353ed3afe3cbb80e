"""The metrics service: cluster-wide stats, service discovery and health across replicas."""

from __future__ import annotations

from typing import ClassVar

from services.metrics.settings import MetricsSettings
from shared.app import App


class MetricsApp(App):
    service: ClassVar[str] = "metrics"

    def __init__(self, settings: MetricsSettings) -> None:
        super().__init__(settings)
        self.metrics_settings = settings
