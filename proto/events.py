"""Application events on ``<prefix>.events.<name>``: the envelope, and how any message body is read as one."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from proto.base import ClientRequest, Message


class Event(Message, frozen=True, kw_only=True, tag="event"):
    """One application event: what ``EventEmitter.emit`` publishes and every listener receives.

    The subject is authoritative for ``event``: a body that names another event is corrected on receipt.
    """

    event: str  # the dotted name, e.g. "user.login"
    data: Any = None
    id: str  # unique per event; also the Nats-Msg-Id header, so a retried emit is stored once
    timestamp: float  # Unix seconds when emitted (or stored, for a foreign message read from history)
    source: str | None = None  # who emitted it; None for a message published by a plain NATS client
    seq: int | None = None  # JetStream sequence in the events stream, set when read from history


class _Reserved(Message, frozen=True, kw_only=True, tag="event_reserved"):
    """Never sent. msgspec requires the ``type`` tag only when decoding a union, and a foreign object that
    happens to have ``event``/``id``/``timestamp`` keys must stay data, so the stream's union has two members."""


EventMessage = Event | _Reserved

event_encoder = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(EventMessage)
_json_decoder = msgspec.json.Decoder()


def foreign_data(body: bytes) -> Any:
    """The ``data`` of a body that is not an envelope: its JSON value, else its text, else None when empty."""
    if not body:
        return None
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")


def read_event(name: str, body: bytes, *, default_id: str, timestamp: float, seq: int | None = None) -> Event:
    """Read any message on an event subject as an :class:`Event`.

    An envelope is taken as is (its name corrected to the subject's); anything else — ``nats pub
    raaf.events.user.login '{"user_id":"u1"}'`` — becomes an event whose ``data`` is the body, with
    ``default_id`` and ``timestamp`` filled in by the reader.
    """
    try:
        event = event_decoder.decode(body)
    except msgspec.DecodeError:  # ValidationError is a DecodeError too: a foreign body, not an envelope
        event = None
    if not isinstance(event, Event):
        return Event(event=name, data=foreign_data(body), id=default_id, timestamp=timestamp, seq=seq)
    if event.event != name or event.seq != seq:
        event = msgspec.structs.replace(event, event=name, seq=seq)
    return event


# ---- the gateway's event messages (WebSocket, SSE and REST) -------------------------------------

EventPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SubscribeEvents(ClientRequest, frozen=True, kw_only=True, tag="subscribe_events"):
    """Receive the events matching ``pattern`` (``user.*``, ``user.**``) as ``event`` messages.

    First, if asked: the last ``history`` stored ones, or those stored after ``after_seq`` (a ``seq`` seen
    before, to resume), each with its ``seq``; then live ones, with nothing missed or repeated in between.
    """

    pattern: EventPattern
    history: Annotated[int, msgspec.Meta(ge=0)] = 0
    after_seq: Annotated[int, msgspec.Meta(ge=0)] | None = None


class UnsubscribeEvents(ClientRequest, frozen=True, kw_only=True, tag="unsubscribe_events"):
    pattern: EventPattern


class EmitEvent(ClientRequest, frozen=True, kw_only=True, tag="emit_event"):
    """Emit ``event`` with ``data`` (any JSON) on the platform's event bus; answered by ``ack``."""

    event: EventPattern
    data: msgspec.Raw = msgspec.Raw(b"null")


class EventHistory(Message, frozen=True, kw_only=True, tag="event_history"):
    """``GET /v1/events/history``: stored events matching ``pattern``, oldest first."""

    pattern: str
    events: list[Event]
