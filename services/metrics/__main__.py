"""Run the metrics service: ``python -m services.metrics``."""

import sys

from services.metrics.app import MetricsApp
from services.metrics.settings import MetricsSettings
from shared.service.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("metrics", MetricsSettings.from_env, MetricsApp))
