"""The event bus at the gateway: WebSocket ``subscribe_events`` / ``unsubscribe_events`` / ``emit_event``,
SSE ``GET /v1/events?pattern=``, REST ``POST /v1/events/{name}`` and ``GET /v1/events/history``.

Clients see only the patterns their identity may see (its ``events`` grant, or ``GATEWAY_RESTRICTED_EVENTS``
for identities without one), emit only names they may see, and every event is the bus's own JSON envelope.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
from aiohttp import web

from proto.events import EmitEvent, Event, EventHistory, SubscribeEvents, UnsubscribeEvents
from proto.gateway import Ack, server_encoder
from services.gateway.connection import Connection
from services.gateway.context import GatewayContext
from services.gateway.errors import (
    GatewayErrorKind,
    bad_message,
    forbidden,
    gateway_unavailable,
    message_too_large,
    not_subscribed_to_events,
    too_many_event_patterns,
    too_many_subscriptions,
)
from services.gateway.event_hub import EventHub
from services.gateway.extension import Handlers
from services.gateway.responses import error_response
from shared.errors import (
    BadRequestError,
    LimitExceededError,
    StreamingError,
    TooLargeError,
)
from shared.event_grants import may_see
from shared.events.emitter import EventEmitter
from shared.events.settings import EventSettings
from shared.identity import Identity
from shared.json_depth import JsonTooDeepError, check_json_depth
from shared.service.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class GatewayEventSettings:
    events: EventSettings  # EVENTS_*; the gateway's NATS connection and prefix
    restricted: tuple[str, ...] = ()  # GATEWAY_RESTRICTED_EVENTS: globs only identities granted them may see

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 runtime: RuntimeSettings | None = None) -> GatewayEventSettings:
        env = Env(environ)
        events = EventSettings.from_env(environ)
        if runtime is not None:
            events = dataclasses.replace(events, runtime=runtime,
                                         source=env.string("EVENTS_SOURCE", f"gateway:{runtime.instance_id}"))
        return cls(events=events, restricted=env.items("GATEWAY_RESTRICTED_EVENTS"))


class EventsExtension:
    name = "events"

    def __init__(self, ctx: GatewayContext, settings: GatewayEventSettings | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or GatewayEventSettings.from_env(runtime=ctx.runtime)
        self.hub = EventHub(buffer_limit=self.settings.events.pending_limit)
        self.emitter: EventEmitter | None = None
        self.handles: Handlers = {SubscribeEvents: self._subscribe_ws, UnsubscribeEvents: self._unsubscribe_ws,
                                  EmitEvent: self._emit_ws}

    def routes(self) -> list[web.RouteDef]:
        routes = [web.post("/v1/events/{name}", self.emit_http), web.get("/v1/events/history", self.history_http)]
        if self.ctx.settings.enable_sse:
            routes.append(web.get("/v1/events", self.stream_http))
        return routes

    async def start(self) -> None:
        # The gateway answers stats as itself (websocket_server); its bridge emitter is not a separate instance.
        self.emitter = EventEmitter(settings=self.settings.events, nc=self.ctx.nc, registry=self.ctx.metrics,
                                    report_stats=False)
        await self.emitter.connect()
        self.hub.attach(self.emitter)

    async def stop(self) -> None:
        await self.hub.close()
        if self.emitter is not None:
            await self.emitter.close()

    async def on_disconnect(self, conn: Connection) -> None:
        await self.hub.leave_all(conn)

    async def on_reauth(self, conn: Connection) -> None:
        events = len(self.hub.emitter.settings.runtime.prefix) + len(".events.")
        for subject in list(self.hub.by_connection.get(conn, ())):
            if not may_see(conn.identity, subject[events:], self.settings.restricted):
                await self.hub.leave(conn, subject)

    async def _subscribe_ws(self, conn: Connection, message: SubscribeEvents) -> None:
        # The ack says the subscription is live; a replay (if asked for) follows it.
        ref = message.id
        await self.subscribe(conn, conn.identity, message.pattern, history=message.history,
                             after_seq=message.after_seq,
                             active=None if ref is None else lambda: conn.send_nowait(Ack(ref=ref)))

    async def _unsubscribe_ws(self, conn: Connection, message: UnsubscribeEvents) -> None:
        if not await self.hub.leave(conn, self._listen_subject(conn.identity, message.pattern)):
            raise not_subscribed_to_events(message.pattern)
        _ack(conn, message.id)

    async def _emit_ws(self, conn: Connection, message: EmitEvent) -> None:
        await self.emit(conn.identity, message.event, message.data)
        _ack(conn, message.id)

    # ---- the operations, shared by WebSocket, SSE and REST ------------------------------------

    def _listen_subject(self, identity: Identity, pattern: str) -> str:
        """The NATS subject of a pattern ``identity`` may see, or the typed error why not."""
        emitter = self.hub.emitter
        subject = emitter.listen_subject(pattern)  # an invalid pattern is the client's answer as it is
        nats_pattern = subject[len(emitter.settings.runtime.prefix) + len(".events."):]
        if not may_see(identity, nats_pattern, self.settings.restricted):
            raise forbidden("event", pattern)
        return subject

    async def subscribe(self, conn: Connection, identity: Identity, pattern: str, *, history: int = 0,
                        after_seq: int | None = None, active: Callable[[], object] | None = None) -> None:
        """Join ``pattern`` (call ``active`` once live events flow), then replay what was asked for."""
        subject = self._listen_subject(identity, pattern)
        if self.hub.is_member(conn, subject):
            if active is not None:
                active()
            return
        limit = conn.ctx.max_subscriptions
        if conn.subscription_count + self.hub.count(conn) >= limit:
            raise too_many_subscriptions(limit)
        replaying = history > 0 or after_seq is not None
        try:
            await self.hub.join(conn, pattern, subject, replaying=replaying)
            if active is not None:
                active()
            if not replaying:
                return
            events = await self.hub.emitter.history(pattern, limit=history or None, after_seq=after_seq)
        except LimitExceededError:  # the emitter's listener limit
            raise too_many_event_patterns(self.settings.events.max_patterns) from None
        except StreamingError as exc:
            if exc.kind == GatewayErrorKind.UNAVAILABLE:
                raise  # already the client's answer (the hub is not connected)
            await self.hub.leave(conn, subject)
            raise gateway_unavailable(str(exc)) from None
        for event in events:
            conn.send_nowait(event)
        self.hub.go_live(conn, subject, events)

    async def emit(self, identity: Identity, name: str, data: msgspec.Raw | None) -> Event:
        emitter = self.hub.emitter
        emitter.event_subject(name)  # an invalid name is the client's answer as it is
        if not may_see(identity, name, self.settings.restricted):
            raise forbidden("event", name)
        try:
            return await emitter.emit(name, data, source=identity.subject)
        except TooLargeError as exc:  # the encoded event over its limit
            raise message_too_large(exc.size or 0, exc.limit or 0) from None
        except BadRequestError as exc:  # data that is not JSON
            raise bad_message(exc.reason or exc.message) from None
        except StreamingError as exc:
            raise gateway_unavailable(str(exc)) from None

    # ---- HTTP -----------------------------------------------------------------------------------

    async def emit_http(self, request: web.Request) -> web.Response:
        """``POST /v1/events/{name}``: the body (any JSON; empty for none) is the event's data. 202 + the event."""
        try:
            identity = self.ctx.authenticator.require(request)
            limit = min(self.ctx.settings.max_message_size, self.settings.events.max_event_size)
            if request.content_length is not None and request.content_length > limit:
                raise message_too_large(request.content_length, limit)
            body = await request.content.read(limit + 1)
            if len(body) > limit:
                raise message_too_large(len(body), limit)
            data = None
            if body.strip():
                try:
                    body.decode()
                    check_json_depth(body, self.ctx.settings.max_json_depth)
                    msgspec.json.decode(body)
                except (msgspec.DecodeError, UnicodeDecodeError, JsonTooDeepError) as exc:
                    raise bad_message(f"the body must be JSON ({exc})") from None
                data = msgspec.Raw(body)
            event = await self.emit(identity, request.match_info["name"], data)
        except StreamingError as exc:
            return error_response(exc)
        return web.Response(body=server_encoder.encode(event), status=202, content_type="application/json")

    async def history_http(self, request: web.Request) -> web.Response:
        """``GET /v1/events/history?pattern=user.*&limit=50`` (or ``&after_seq=``/``&since=``): stored events."""
        try:
            identity = self.ctx.authenticator.require(request)
            pattern = request.query.get("pattern", "**")
            self._listen_subject(identity, pattern)
            limit = _query_int(request, "limit")
            after_seq = _query_int(request, "after_seq")
            since = _query_float(request, "since")
            if since is not None and after_seq is not None:
                raise bad_message("give since or after_seq, not both")
            try:
                events = await self.hub.emitter.history(pattern, limit=limit, since=since, after_seq=after_seq)
            except StreamingError as exc:
                raise gateway_unavailable(str(exc)) from None
        except StreamingError as exc:
            return error_response(exc)
        body = server_encoder.encode(EventHistory(pattern=pattern, events=events))
        return web.Response(body=body, content_type="application/json")

    async def stream_http(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/events?pattern=user.*[&pattern=...][&history=N]``: matching events as SSE ``event`` events."""
        ctx = self.ctx
        try:
            identity = ctx.authenticator.require(request)
            patterns = request.query.getall("pattern", [])
            if not patterns:
                raise bad_message("give at least one ?pattern=")
            if len(patterns) > ctx.settings.max_subscriptions:
                raise too_many_subscriptions(ctx.settings.max_subscriptions)
            for pattern in patterns:
                self._listen_subject(identity, pattern)  # refuse before the stream starts
            history = _query_int(request, "history") or 0
            async with ctx.open_stream(request, identity) as stream:
                try:
                    for pattern in patterns:
                        await self.subscribe(stream.conn, identity, pattern, history=history)
                except StreamingError as exc:
                    await stream.conn.send_error(exc.code, exc.message, details=exc.details or None)
                else:
                    await stream.conn.wait_closed()
            return stream.response
        except StreamingError as exc:
            return error_response(exc)


def _ack(conn: Connection, ref: str | None) -> None:
    if ref is not None:
        conn.send_nowait(Ack(ref=ref))


def _query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_message(f"{name} must be an integer") from None
    if number < 0:
        raise bad_message(f"{name} must be >= 0")
    return number


def _query_float(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise bad_message(f"{name} must be a number (Unix seconds)") from None
    if number != number or number < 0 or number > time.time() + 86_400 * 365 * 100:
        raise bad_message(f"{name} must be a time in Unix seconds")
    return number
