"""The chat service: event-sourced rooms, participants, agents and handoffs."""

from __future__ import annotations

from typing import ClassVar

from services.chat.settings import ChatSettings
from shared.app import App


class ChatApp(App):
    service: ClassVar[str] = "chat"

    def __init__(self, settings: ChatSettings) -> None:
        super().__init__(settings)
        self.chat_settings = settings
