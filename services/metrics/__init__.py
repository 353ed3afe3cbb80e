"""The metrics service."""

from services.metrics.app import MetricsApp
from services.metrics.settings import MetricsSettings

__all__ = ["MetricsApp", "MetricsSettings"]
