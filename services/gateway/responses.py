"""HTTP answers in the wire's JSON: typed errors with the status of their code, and msgspec-encoded bodies."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from proto.errors import http_status
from proto.gateway import server_encoder
from shared.errors import RateLimitError, StreamingError


def error_response(exc: StreamingError, ref: str | None = None, *,
                   headers: dict[str, str] | None = None) -> web.Response:
    """``{"type": "error", "code": ..., "message": ...}`` with the HTTP status of its code; a rate limit that
    knows its ``retry_after`` also says it in ``Retry-After``."""
    answer = dict(headers or {})
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        answer["Retry-After"] = str(max(1, round(exc.retry_after)))
    return web.Response(body=server_encoder.encode(exc.to_wire(ref)), status=http_status(exc.code),
                        content_type="application/json", headers=answer)


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")
