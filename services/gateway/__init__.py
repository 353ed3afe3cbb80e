"""The gateway service: WebSocket, SSE and REST entry to the platform, channels across replicas."""

from services.gateway.app import GatewayApp
from services.gateway.connection import Connection
from services.gateway.errors import GatewayError
from services.gateway.extension import GatewayExtension
from services.gateway.settings import GatewaySettings
from shared.identity import Identity

__all__ = ["Connection", "GatewayApp", "GatewayError", "GatewayExtension", "GatewaySettings", "Identity"]
