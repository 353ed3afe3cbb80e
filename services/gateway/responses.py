"""HTTP answers in the wire's JSON: typed errors with a matching status, and msgspec-encoded bodies."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from proto.errors import Error
from proto.gateway import server_encoder
from services.gateway.errors import GatewayError, RateLimited


def error_response(exc: GatewayError, ref: str | None = None) -> web.Response:
    """``{"type": "error", "code": ..., "message": ...}`` with the error's HTTP status."""
    details = exc.details()
    raw = None if details is None else {k: msgspec.Raw(msgspec.json.encode(v)) for k, v in details.items()}
    body = server_encoder.encode(Error(code=exc.code, message=exc.message, ref=ref, details=raw))
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return web.Response(body=body, status=exc.http_status, content_type="application/json", headers=headers)


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")
