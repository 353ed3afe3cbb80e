"""The gateway service."""

from services.gateway.app import GatewayApp
from services.gateway.settings import GatewaySettings

__all__ = ["GatewayApp", "GatewaySettings"]
