"""Service lifecycle announcements, listened to by the metrics service."""

from __future__ import annotations

from typing import Literal

import msgspec

from proto.base import Message


class ServiceStarted(Message, frozen=True, kw_only=True, tag="service_started"):
    """A service instance, or a library stats reporter (``EventEmitter``, ``MessageQueue``), began answering.

    Reporters also answer ``Subjects.stats_reporters`` with this announcement, so discovery finds them.
    """

    service: str
    instance: str
    version: str
    http_url: str | None = None
    at: float
    kind: Literal["service", "reporter"] = "service"  # a reporter has no /readyz and no micro registration


class ServiceStopping(Message, frozen=True, kw_only=True, tag="service_stopping"):
    service: str
    instance: str
    reason: Literal["signal", "stop"] = "stop"
    at: float


LifecycleEvent = ServiceStarted | ServiceStopping

lifecycle_encoder = msgspec.json.Encoder()
lifecycle_decoder = msgspec.json.Decoder(LifecycleEvent)
