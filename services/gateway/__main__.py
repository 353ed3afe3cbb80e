"""Run the gateway service: ``python -m services.gateway``."""

import sys

from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings
from shared.service.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("gateway", GatewaySettings.from_env, GatewayApp))
