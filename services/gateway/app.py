"""The gateway service: clients' WebSocket, SSE and REST entry to the platform."""

from __future__ import annotations

from typing import ClassVar

from services.gateway.settings import GatewaySettings
from shared.app import App


class GatewayApp(App):
    service: ClassVar[str] = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self.gateway_settings = settings
