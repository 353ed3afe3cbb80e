"""Errors the metrics service answers with; each carries its wire code."""

from __future__ import annotations

from typing import ClassVar

from proto.errors import Error, ErrorCode


class MetricsServiceError(Exception):
    """Base of the metrics service's errors."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    http_status: ClassVar[int] = 500

    def to_wire(self) -> Error:
        return Error(code=self.code, message=str(self))


class NatsUnavailableError(MetricsServiceError):
    """NATS is not connected, so no instance can be asked."""

    code: ClassVar[ErrorCode] = ErrorCode.CONNECTION_ERROR
    http_status: ClassVar[int] = 503

    def __init__(self, nats_url: str) -> None:
        super().__init__(f"NATS at {nats_url} is not connected; cannot gather statistics")
        self.nats_url = nats_url
