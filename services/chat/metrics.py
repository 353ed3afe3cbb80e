"""The chat service's Prometheus metrics (``raaf_chat_*``, declared in ``shared.metrics.catalogue``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from prometheus_client import CollectorRegistry

from proto.chat import ChatCommand
from shared.metrics import catalogue as names

COMMANDS = tuple(str(kind.__struct_config__.tag) for kind in get_args(ChatCommand))


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.commands = names.CHAT_COMMANDS.create(r)
        self.command_seconds = names.CHAT_COMMAND_DURATION.create(r)
        self.commands_in_flight = names.CHAT_COMMANDS_IN_FLIGHT.create(r)
        self.messages = names.CHAT_MESSAGES.create(r)
        self.answers = names.CHAT_ANSWERS.create(r)
        self.answer_seconds = names.CHAT_ANSWER_DURATION.create(r)
        self.first_delta_seconds = names.CHAT_ANSWER_FIRST_DELTA.create(r)
        self.handoffs = names.CHAT_HANDOFFS.create(r)
        self.write_conflicts = names.CHAT_WRITE_CONFLICTS.create(r)
        self.typing_expired = names.CHAT_TYPING_EXPIRED.create(r)
        self.sessions_reaped = names.CHAT_SESSIONS_REAPED.create(r)
        self.rooms = names.CHAT_ROOMS.create(r)
        self.participants = names.CHAT_PARTICIPANTS.create(r)
        self.sessions = names.CHAT_SESSIONS.create(r)
        self.active_answers = names.CHAT_ACTIVE_ANSWERS.create(r)
        self.queued_messages = names.CHAT_QUEUED_MESSAGES.create(r)
        self.typing = names.CHAT_TYPING.create(r)
        # Known label values start at zero, so rates and absent() work from the first scrape.
        for command in COMMANDS:
            self.commands.labels(command=command, outcome="ok")
            self.command_seconds.labels(command=command)
        for by in ("agent", "user"):
            self.handoffs.labels(by=by)
        for status in ("completed", "failed", "cancelled"):
            self.answers.labels(status=status)

    def observe(self, *, rooms: Callable[[], float], participants: Callable[[], float],
                sessions: Callable[[], float], active_answers: Callable[[], float],
                queued: Callable[[], float], typing: Callable[[], float]) -> None:
        """Read the gauges from the fold when scraped."""
        self.rooms.set_function(rooms)
        self.participants.set_function(participants)
        self.sessions.set_function(sessions)
        self.active_answers.set_function(active_answers)
        self.queued_messages.set_function(queued)
        self.typing.set_function(typing)
