"""Run the chat service: ``python -m services.chat``."""

import sys

from services.chat.app import ChatApp
from services.chat.settings import ChatSettings
from shared.service.main import run_service

if __name__ == "__main__":
    sys.exit(run_service("chat", ChatSettings.from_env, ChatApp))
