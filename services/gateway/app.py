"""The gateway service: clients' WebSocket, SSE and REST entry to the platform."""

from __future__ import annotations

from typing import ClassVar

from services.gateway.runs import RunsExtension
from services.gateway.settings import GatewaySettings
from shared.app import App


class GatewayApp(App):
    service: ClassVar[str] = "gateway"

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self.gateway_settings = settings
        # Runs (REST, SSE, OpenAI-compatible). With the gateway core's extensions this is one line of
        # services/gateway/extensions.py instead.
        self.runs = RunsExtension(self)
        self.http_app.add_routes(self.runs.routes())

    async def on_start(self) -> None:
        await self.runs.start(self)

    async def on_stop(self) -> None:
        await self.runs.stop()
