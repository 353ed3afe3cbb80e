"""The HTTP door: every request meets its route's rule in ``shared.access``, and bodies must be JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from proto.errors import Error, ErrorCode
from proto.gateway import server_encoder
from services.gateway.auth import Authenticator, OriginCheck
from services.gateway.responses import error_response
from shared import access
from shared.errors import StreamingError
from shared.identity import compile_pattern

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def access_middleware(authenticator: Authenticator, table: access.AccessTable = access.DEFAULT_TABLE,
                      origins: OriginCheck | None = None, hosts: tuple[str, ...] = ()) -> Middleware:
    """A route without a rule is refused; ``admin`` routes need the role, every rule but ``public`` a caller the
    gateway accepts (the handler then decides owner and grant rules on the resource itself). A browser's
    ``Origin`` must be one ``/ws`` accepts too (the gateway's own or ``GATEWAY_ALLOWED_ORIGINS``), and the
    ``Host`` one of ``hosts`` (globs; empty: any)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if hosts and not _host_allowed(request.host, hosts):
            return refusal(403, ErrorCode.FORBIDDEN, f"host {request.host!r} is not served (GATEWAY_ALLOWED_HOSTS)")
        resource = request.match_info.route.resource
        if request.match_info.http_exception is not None or resource is None:
            return await handler(request)  # unknown path or method: aiohttp's own 404 / 405
        decision = table.route(request.method, resource.canonical)
        if decision is None:
            return refusal(403, ErrorCode.FORBIDDEN, f"{request.method} {resource.canonical} has no access rule")
        if request.method in _BODY_METHODS and request.body_exists and request.content_type != "application/json":
            return refusal(415, ErrorCode.BAD_REQUEST,
                           f"request bodies must be application/json, not {request.content_type!r}")
        if decision.rule is not access.Rule.PUBLIC:
            try:
                if origins is not None:
                    origins.check(request)
                identity = authenticator.require(request)
                if decision.rule is access.Rule.ADMIN:
                    access.require_admin(identity, decision.kind, decision.action)
            except StreamingError as exc:
                return error_response(exc)
        return await handler(request)

    return guard


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    name = host.lower()
    if name.startswith("["):
        name = name[: name.index("]") + 1] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]  # the port
    for pattern in allowed:
        compiled = compile_pattern(pattern.lower())
        if compiled is not None and compiled.fullmatch(name):
            return True
    return False


def refusal(status: int, code: ErrorCode, message: str) -> web.Response:
    return web.Response(status=status, body=server_encoder.encode(Error(code=code, message=message)),
                        content_type="application/json")
