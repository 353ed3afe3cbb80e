"""The chat service's Prometheus metrics (``raaf_chat_*``), beside the shared runtime's."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_ANSWER_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
_COMMAND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class ChatMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.commands = Counter("raaf_chat_commands_total",
                                "Chat commands handled, by command and outcome ('ok' or the error code).",
                                ["command", "outcome"], registry=r)
        self.command_seconds = Histogram("raaf_chat_command_duration_seconds", "Time to handle a chat command.",
                                         ["command"], buckets=_COMMAND_BUCKETS, registry=r)
        self.commands_in_flight = Gauge("raaf_chat_commands_in_flight", "Chat commands being handled now.",
                                        registry=r)
        self.messages = Counter("raaf_chat_messages_total", "User messages this replica stored.", registry=r)
        self.answers = Counter("raaf_chat_answers_total", "Agent answers this replica relayed to their end, by status.",
                               ["status"], registry=r)
        self.answer_seconds = Histogram("raaf_chat_answer_duration_seconds",
                                        "Time from an answer's start to its end.", buckets=_ANSWER_BUCKETS, registry=r)
        self.first_delta_seconds = Histogram("raaf_chat_answer_first_delta_seconds",
                                             "Time from relaying an answer to its first text delta.",
                                             buckets=_ANSWER_BUCKETS, registry=r)
        self.handoffs = Counter("raaf_chat_handoffs_total", "Handoffs stored, by who asked ('agent' or 'user').",
                                ["by"], registry=r)
        self.write_conflicts = Counter("raaf_chat_write_conflicts_total",
                                       "Appends refused because another writer moved the room first (then retried).",
                                       registry=r)
        self.typing_expired = Counter("raaf_chat_typing_expired_total",
                                      "Typing indicators that expired without a stop.", registry=r)
        self.rooms = Gauge("raaf_chat_rooms", "Rooms that exist.", registry=r)
        self.participants = Gauge("raaf_chat_participants", "Participants (users) over all rooms.", registry=r)
        self.sessions = Gauge("raaf_chat_sessions", "Client sessions joined over all rooms.", registry=r)
        self.active_answers = Gauge("raaf_chat_active_answers", "Answers being streamed over all rooms.", registry=r)
        self.queued_messages = Gauge("raaf_chat_queued_messages", "User messages waiting for an answer.", registry=r)
        self.typing = Gauge("raaf_chat_typing", "Typing indicators on now.", registry=r)

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
