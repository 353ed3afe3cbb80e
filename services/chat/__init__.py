"""The chat service."""

from services.chat.app import ChatApp
from services.chat.settings import ChatSettings

__all__ = ["ChatApp", "ChatSettings"]
