"""Subject names and the rules that keep user-supplied names from becoming wildcards."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "raaf"

# Characters that may stand in a token as themselves; everything else is escaped as ``~XX``.
_SAFE = re.compile(r"[A-Za-z0-9_\-]")
_PLAIN_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
_PREFIX = re.compile(r"[A-Za-z0-9_\-]{1,32}")
MAX_NAME_LENGTH = 200


class InvalidNameError(ValueError):
    """A user-supplied name cannot be used as (part of) a subject."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid name {name!r}: {reason}")
        self.name = name
        self.reason = reason


def encode_token(name: str) -> str:
    """Map any non-empty name injectively onto one safe subject token.

    ``[A-Za-z0-9_-]`` stand as themselves; every other character (``.``, ``*``, ``>``, spaces, ``~`` ...)
    becomes ``~`` plus its UTF-8 bytes in hex, so a name can never split into two tokens or be a wildcard.
    """
    return _escape(name, "~")


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`."""
    return _unescape(token, "~")


def encode_key(name: str) -> str:
    """Map any non-empty name injectively onto one JetStream KV key (``[-/_=.A-Za-z0-9]+``, no dots).

    Like :func:`encode_token`, but escaped as ``=XX``: ``~`` is no key character. A name that is a plain token
    (every run id, most instance ids) is its own key, so such keys read the same as before there was an escape.
    """
    return _escape(name, "=")


def decode_key(key: str) -> str:
    """Invert :func:`encode_key`."""
    return _unescape(key, "=")


def _escape(name: str, marker: str) -> str:
    if not name:
        raise InvalidNameError(name, "empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(name, f"longer than {MAX_NAME_LENGTH} characters")
    if _PLAIN_TOKEN.fullmatch(name):
        return name
    out: list[str] = []
    for ch in name:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.append("".join(f"{marker}{b:02x}" for b in ch.encode()))
    return "".join(out)


def _unescape(token: str, marker: str) -> str:
    if marker not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == marker:
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def check_event_name(name: str) -> str:
    """Validate a dotted event name (``user.login``): plain tokens only, no wildcards; return it."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(name, "empty or too long")
    for token in name.split("."):
        if not _PLAIN_TOKEN.fullmatch(token):
            raise InvalidNameError(name, "tokens must be non-empty and use only letters, digits, '_' or '-'")
    return name


def event_pattern(pattern: str) -> str:
    """Turn a listener pattern into NATS wildcards: ``*`` is one token, ``>`` or ``**`` the tail."""
    if not pattern or len(pattern) > MAX_NAME_LENGTH:
        raise InvalidNameError(pattern, "empty or too long")
    tokens = pattern.split(".")
    out: list[str] = []
    for i, token in enumerate(tokens):
        if token in (">", "**"):
            if i != len(tokens) - 1:
                raise InvalidNameError(pattern, f"{token!r} may only be the last token")
            out.append(">")
        elif token == "*" or _PLAIN_TOKEN.fullmatch(token):
            out.append(token)
        else:
            raise InvalidNameError(pattern, "tokens must be '*', a tail '>'/'**', or letters, digits, '_', '-'")
    return ".".join(out)


def check_prefix(prefix: str) -> str:
    """The deployment's subject prefix is one plain token."""
    if not _PREFIX.fullmatch(prefix):
        raise InvalidNameError(prefix, "prefix must be 1-32 letters, digits, '_' or '-'")
    return prefix


@dataclass(frozen=True, slots=True)
class Subjects:
    """Every subject the platform uses, under one prefix (default ``raaf``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    # Application events (the seed's EventEmitter): raaf.events.<dotted name>.
    def event(self, name: str) -> str:
        return f"{self.prefix}.events.{check_event_name(name)}"

    def event_listen(self, pattern: str) -> str:
        return f"{self.prefix}.events.{event_pattern(pattern)}"

    @property
    def events_all(self) -> str:
        return f"{self.prefix}.events.>"

    # Gateway channels: raaf.channel.<encoded name>.
    def channel(self, name: str) -> str:
        return f"{self.prefix}.channel.{encode_token(name)}"

    @property
    def channels_all(self) -> str:
        return f"{self.prefix}.channel.>"

    # Agent runs: requests in a queue group, then one event subject per run.
    @property
    def run_requests(self) -> str:
        return f"{self.prefix}.runs.request"

    def run_events(self, run_id: str) -> str:
        return f"{self.prefix}.runs.events.{encode_token(run_id)}"

    @property
    def run_events_all(self) -> str:
        return f"{self.prefix}.runs.events.>"

    def run_cancel(self, run_id: str) -> str:
        return f"{self.prefix}.runs.cancel.{encode_token(run_id)}"

    # Chat rooms: commands to the chat service, events per room.
    @property
    def chat_commands(self) -> str:
        return f"{self.prefix}.chat.cmd"

    def chat_room_events(self, room_id: str) -> str:
        return f"{self.prefix}.chat.room.{encode_token(room_id)}"

    @property
    def chat_room_events_all(self) -> str:
        return f"{self.prefix}.chat.room.>"

    # Jobs: enqueue requests, dispatch per job type, lifecycle events.
    @property
    def job_enqueue(self) -> str:
        return f"{self.prefix}.jobs.enqueue"

    def job_dispatch(self, job_type: str) -> str:
        return f"{self.prefix}.jobs.dispatch.{encode_token(job_type)}"

    def job_lifecycle(self, event: str) -> str:
        return f"{self.prefix}.jobs.lifecycle.{check_event_name(event)}"

    @property
    def job_lifecycle_all(self) -> str:
        return f"{self.prefix}.jobs.lifecycle.>"

    # Jobs, per named queue: every other request to the scheduler, dispatch nudges, cancels, wake-ups.
    @property
    def job_requests(self) -> str:
        return f"{self.prefix}.jobs.request"

    def job_dispatch_queue(self, queue: str, job_type: str) -> str:
        """Nudges for one job type of one named queue (workers listen in :meth:`job_workers_group`)."""
        return f"{self.prefix}.jobs.dispatch.{encode_token(queue)}.{encode_token(job_type)}"

    def job_workers_group(self, queue: str, job_type: str) -> str:
        """The NATS queue group of one job type's workers."""
        return f"{self.prefix}-workers-{encode_token(queue)}-{encode_token(job_type)}"

    def job_cancel(self, queue: str) -> str:
        return f"{self.prefix}.jobs.cancel.{encode_token(queue)}"

    def job_wake(self, queue: str) -> str:
        return f"{self.prefix}.jobs.wake.{encode_token(queue)}"

    # Service lifecycle and telemetry, listened to by the metrics service.
    def service_lifecycle(self, service: str) -> str:
        return f"{self.prefix}.svc.lifecycle.{encode_token(service)}"

    @property
    def service_lifecycle_all(self) -> str:
        return f"{self.prefix}.svc.lifecycle.>"

    def telemetry(self, service: str) -> str:
        return f"{self.prefix}.svc.telemetry.{encode_token(service)}"

    @property
    def telemetry_all(self) -> str:
        return f"{self.prefix}.svc.telemetry.>"

    # JetStream stream names (one per event store), derived from the prefix so deployments can share NATS.
    def stream_name(self, kind: str) -> str:
        return f"{self.prefix.upper().replace('-', '_')}_{kind.upper()}"

    # Statistics: every instance answers ``service_stats`` (scatter-gather, no queue group); the metrics
    # service answers the combined figures and the health of every instance.
    @property
    def service_stats(self) -> str:
        return f"{self.prefix}.svc.stats"

    @property
    def stats_reporters(self) -> str:
        """Request: every library stats reporter (not a micro service, so not in ``$SRV.PING``) answers."""
        return f"{self.prefix}.svc.reporters"

    @property
    def cluster_stats(self) -> str:
        return f"{self.prefix}.metrics.stats"

    @property
    def cluster_health(self) -> str:
        return f"{self.prefix}.metrics.health"

    # Agent runs (continued): cancel requests of every run, and the agents query.
    @property
    def run_cancel_all(self) -> str:
        return f"{self.prefix}.runs.cancel.*"

    @property
    def run_agents(self) -> str:
        """Request/reply: which agents the runners serve."""
        return f"{self.prefix}.runs.agents"

    @property
    def run_decide(self) -> str:
        """Request/reply (queue group ``agent-runner``): a decision on a parked run's tool call approval."""
        return f"{self.prefix}.runs.decide"

    # Chat (continued): the room directory and each room's log (stream ``chat``), and each room's feed
    # (stream ``chat_feed``): conversation messages (capped at the history size) and answers being streamed.
    @property
    def chat_directory(self) -> str:
        return f"{self.prefix}.chat.dir"

    def chat_room_log(self, room_id: str) -> str:
        return f"{self.prefix}.chat.log.{encode_token(room_id)}"

    @property
    def chat_room_logs_all(self) -> str:
        return f"{self.prefix}.chat.log.*"

    def chat_feed(self, room_id: str) -> str:
        """Both feed subjects of one room (a filter for readers)."""
        return f"{self.prefix}.chat.feed.{encode_token(room_id)}.*"

    def chat_feed_messages(self, room_id: str) -> str:
        return f"{self.prefix}.chat.feed.{encode_token(room_id)}.msg"

    def chat_feed_answers(self, room_id: str) -> str:
        return f"{self.prefix}.chat.feed.{encode_token(room_id)}.answer"

    @property
    def chat_feed_all(self) -> str:
        return f"{self.prefix}.chat.feed.*.*"

    # Gateway: channel presence events, and gateway-to-gateway control (presence, stats, peers, broadcast).
    def presence(self, channel: str) -> str:
        return f"{self.prefix}.presence.{encode_token(channel)}"

    @property
    def gateway_control(self) -> str:
        return f"{self.prefix}.gateway.control"

    @property
    def gateway_broadcast(self) -> str:
        """Server messages every gateway forwards to every one of its connections."""
        return f"{self.prefix}.gateway.broadcast"

    # Gateway extensions (services/gateway/extension.py): their own subjects, under one family the gateway's
    # NATS user may use.
    def extension(self, name: str) -> str:
        """``<prefix>.ext.<name>``; ``name`` is dotted like an event name (``watch.disk``)."""
        return f"{self.prefix}.ext.{check_event_name(name)}"

    @property
    def extensions_all(self) -> str:
        return f"{self.prefix}.ext.>"
