"""Runs over HTTP: ``POST /v1/runs``, ``GET /v1/runs/{id}``, its SSE ``/events`` (``Last-Event-ID``), cancel, agents."""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import msgspec
from aiohttp import web
from prometheus_client import CollectorRegistry

from proto.errors import Error, ErrorCode, error_encoder, http_status
from proto.runs import (
    AgentList,
    AgentSpec,
    AgentStream,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequest,
    agent_stream_decoder,
    is_run_id,
)
from services.gateway.auth import Authenticator
from services.gateway.errors import GatewayError
from services.gateway.quota import IdentityRate, StreamLease, StreamQuota
from services.gateway.responses import error_response as gateway_error_response
from services.gateway.resume_trace import resume_span
from services.gateway.runs_settings import RunRouteSettings
from shared import access
from shared.clients.runs import RunClient
from shared.errors import StreamingError
from shared.identity import Identity
from shared.json_depth import DEFAULT_MAX_DEPTH, JsonTooDeepError, check_json_depth
from shared.metrics import catalogue as names
from shared.runs.log import stored_type
from shared.tracing import traced_handler

AGENTS_TTL: Final = 5.0  # seconds the runners' agent list is trusted for grant checks
SSE_HEADERS: Final = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                      "X-Accel-Buffering": "no"}


def error_response(error: Error) -> web.Response:
    headers = {"Retry-After": "1"} if error.code in (ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE) else None
    return web.Response(status=http_status(error.code), body=error_encoder.encode(error),
                        content_type="application/json", headers=headers)


def run_request(message: AgentStream, identity: Identity) -> RunRequest | Error:
    """The runners' request for a client's ``agent_stream``: a fresh run id, or the client's own inside its
    namespace (``shared.access.scoped_run_id``), owned by the identity, within its token's run limits."""
    run_id = uuid.uuid4().hex if message.run_id is None else access.scoped_run_id(identity, message.run_id)
    if not is_run_id(run_id):
        return Error(code=ErrorCode.BAD_REQUEST, message="run_id must be 1-64 letters, digits, '_' or '-' "
                     "(50 when authenticated: the namespace takes 14)", ref=message.id)
    try:
        max_turns, timeout = access.run_limits(identity, message.max_turns, message.timeout)
    except StreamingError as exc:
        return exc.to_wire(message.id)
    return RunRequest(run_id=run_id, agent=message.agent, input=message.input, history=message.history,
                      agents=message.agents, timeout=timeout, retry_count=message.retry_count,
                      retry_delay=message.retry_delay, max_turns=max_turns, metadata=message.metadata,
                      owner=identity.subject)


def last_event_id(request: web.Request) -> int | Error:
    """The seq a client has seen: ``Last-Event-ID`` (what browsers resend) or ``?after=``; 0 for neither."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        seq = int(raw)
    except ValueError:
        return Error(code=ErrorCode.BAD_REQUEST, message=f"Last-Event-ID must be an event seq, not {raw!r}")
    return seq if seq >= 0 else Error(code=ErrorCode.BAD_REQUEST, message="Last-Event-ID must be >= 0")


class RunAccess:
    """Runs asked of ``shared.access``: starting needs the grants for everything the run can reach (what a
    configured agent reaches, the runners' agent list tells, fetched at most every AGENTS_TTL seconds);
    reading, following, resuming or cancelling a run needs to be its owner (or an admin)."""

    def __init__(self, routes: RunRoutes) -> None:
        self.routes = routes
        self.rate = IdentityRate(routes.settings.runs_per_minute, what="runs", setting="GATEWAY_RUNS_PER_MINUTE")
        self._agents: dict[str, AgentSpec] = {}
        self._agents_at = -math.inf

    async def check_start(self, identity: Identity, agent: str, inline: Sequence[AgentSpec] = ()) -> None:
        """Raise the typed error (``forbidden``, ``rate_limited``) unless ``identity`` may start this run now."""
        access.check_agents(identity, agent, inline, await self.configured_agents())
        self.rate.take(identity)

    async def configured_agents(self) -> dict[str, AgentSpec]:
        now = time.monotonic()
        if now - self._agents_at > AGENTS_TTL:
            reply = await self.routes.client.agents()
            if isinstance(reply, AgentList):
                self._agents = {a.name: a for a in reply.agents}
                self._agents_at = now
        return self._agents

    async def check_read(self, identity: Identity, run_id: str, action: str = "read") -> Error | None:
        """None if ``identity`` may read ``run_id``; else the typed error (unknown run, or someone else's)."""
        first = await self.routes.client.log.first(run_id)
        if first is None:
            return Error(code=ErrorCode.NOT_FOUND, message=f"no run {run_id}", ref=run_id)
        try:
            access.check_run(identity, run_id, first, action)
        except StreamingError as exc:
            return exc.to_wire()
        return None


T = TypeVar("T")


class RunRoutes:
    """The REST and SSE side of runs; every error is a typed JSON ``Error`` with a matching HTTP status."""

    def __init__(self, settings: RunRouteSettings, registry: CollectorRegistry, authenticator: Authenticator,
                 *, quota: StreamQuota, max_json_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self.settings = settings
        self.quota = quota
        self.max_json_depth = max_json_depth
        self.authenticator = authenticator
        self.access = RunAccess(self)
        self._client: RunClient | None = None
        self.streams = names.RUN_STREAMS.create(registry)
        self.delivered = names.RUN_STREAM_EVENTS.create(registry)
        for transport in ("sse", "websocket", "openai"):
            self.streams.labels(transport=transport)
            self.delivered.labels(transport=transport)

    @property
    def client(self) -> RunClient:
        if self._client is None:
            raise RuntimeError("run routes are not started (no NATS connection yet)")
        return self._client

    def bind(self, client: RunClient) -> None:
        self._client = client

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/runs", traced_handler("raaf.gateway", "/v1/runs", self.start)),
            web.get("/v1/runs/{run_id}", self.status),
            web.get("/v1/runs/{run_id}/events", self.events),
            web.post("/v1/runs/{run_id}/cancel",
                     traced_handler("raaf.gateway", "/v1/runs/{run_id}/cancel", self.cancel)),
            web.get("/v1/agents", self.agents),
        ]

    async def admit_start(self, request: web.Request, decoder: msgspec.json.Decoder[T], what: str,
                          agent: Callable[[T], str]) -> tuple[Identity, T] | Error:
        """A dialect's request to start a run: the caller and its decoded body, once authenticated, within the body
        limit, well-formed (``what`` names the body in the error) and allowed to run ``agent(body)``; else the
        typed error, for the route to answer in its own shape."""
        try:
            identity = self.authenticator.require(request)
        except StreamingError as exc:
            return Error(code=exc.code, message=exc.message)
        raw = await self.read_body(request)
        if isinstance(raw, Error):
            return raw
        try:
            body = decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return Error(code=ErrorCode.BAD_REQUEST, message=f"malformed {what}: {exc}")
        try:
            await self.access.check_start(identity, agent(body))
        except StreamingError as exc:
            return Error(code=exc.code, message=exc.message)
        return identity, body

    def lease(self, request: web.Request, identity: Identity) -> StreamLease | Error:
        """A slot for one more long-lived stream of ``identity`` (taken before its run starts), or the typed
        ``limit_exceeded`` error (HTTP 429) for the route to answer in its own shape."""
        try:
            return self.quota.take(request, identity)
        except GatewayError as exc:
            return exc.to_wire()

    async def read_body(self, request: web.Request) -> bytes | Error:
        if request.content_length is not None and request.content_length > self.settings.max_body_bytes:
            return Error(code=ErrorCode.TOO_LARGE, message=f"request body over {self.settings.max_body_bytes} bytes "
                         "(GATEWAY_RUN_MAX_BODY_BYTES)")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > self.settings.max_body_bytes:
                return Error(code=ErrorCode.TOO_LARGE,
                             message=f"request body over {self.settings.max_body_bytes} bytes "
                             "(GATEWAY_RUN_MAX_BODY_BYTES)")
        try:
            check_json_depth(bytes(body), self.max_json_depth)
        except JsonTooDeepError as exc:
            return exc.to_wire()
        return bytes(body)

    async def start(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = self.authenticator.require(request)
        except StreamingError as exc:
            return gateway_error_response(exc)
        body = await self.read_body(request)
        if isinstance(body, Error):
            return error_response(body)
        try:
            message = agent_stream_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return error_response(Error(code=ErrorCode.BAD_REQUEST, message=f"malformed run: {exc}"))
        try:
            await self.access.check_start(identity, message.agent, message.agents)
        except StreamingError as exc:
            return gateway_error_response(exc, message.id)
        run = run_request(message, identity)
        if isinstance(run, Error):
            return error_response(run)
        streaming = message.stream or "text/event-stream" in request.headers.get("Accept", "")
        lease = self.lease(request, identity) if streaming else None
        if isinstance(lease, Error):
            return error_response(msgspec.structs.replace(lease, ref=message.id))
        with lease or contextlib.nullcontext():
            reply = await self.client.start(run)
            if isinstance(reply, Error):
                return error_response(msgspec.structs.replace(reply, ref=message.id or reply.ref))
            if lease is not None:
                return await self.stream(request, run.run_id, 0, lease)
        body_out = {"run_id": reply.run_id, "queued": reply.queued,
                    "events_url": f"/v1/runs/{reply.run_id}/events", "status_url": f"/v1/runs/{reply.run_id}"}
        return web.json_response(body_out, status=202)

    async def readable(self, request: web.Request, action: str = "read") -> str | web.Response:
        """The run id of ``/v1/runs/{run_id}...`` if the caller may read that run, else the error response."""
        found = await self.reader(request, action)
        return found if isinstance(found, web.Response) else found[1]

    async def reader(self, request: web.Request, action: str = "read") -> tuple[Identity, str] | web.Response:
        """:meth:`readable`, with the caller."""
        run_id = request.match_info["run_id"]
        if not is_run_id(run_id):
            return error_response(Error(code=ErrorCode.BAD_REQUEST, message="not a run id"))
        try:
            identity = self.authenticator.require(request)
        except StreamingError as exc:
            return gateway_error_response(exc, run_id)
        denied = await self.access.check_read(identity, run_id, action)
        return (identity, run_id) if denied is None else error_response(denied)

    async def status(self, request: web.Request) -> web.Response:
        run_id = await self.readable(request)
        if isinstance(run_id, web.Response):
            return run_id
        last = await self.client.log.last(run_id)
        if last is None:
            return error_response(Error(code=ErrorCode.NOT_FOUND, message=f"no run {run_id}", ref=run_id))
        body: dict[str, object] = {"run_id": run_id, "last_seq": last.seq, "status": "running"}
        match last:
            case RunCompleted(output=output, agent=agent, usage=usage):
                body |= {"status": "completed", "output": output, "agent": agent,
                         "usage": msgspec.to_builtins(usage)}
            case RunFailed(code=code, message=text):
                body |= {"status": "failed", "error": {"code": code.value, "message": text}}
            case RunCancelled(reason=reason):
                body |= {"status": "cancelled", "reason": reason}
        return web.json_response(body)

    async def events(self, request: web.Request) -> web.StreamResponse:
        after = last_event_id(request)
        if isinstance(after, Error):
            return error_response(after)
        found = await self.reader(request, "follow")
        if isinstance(found, web.Response):
            return found
        identity, run_id = found
        lease = self.lease(request, identity)
        if isinstance(lease, Error):
            return error_response(msgspec.structs.replace(lease, ref=run_id))
        with lease:
            if "Last-Event-ID" not in request.headers and "after" not in request.query:
                return await self.stream(request, run_id, after, lease)
            async with resume_span(self.client.log, run_id, after, "sse"):  # a client following again
                return await self.stream(request, run_id, after, lease)

    async def stream(self, request: web.Request, run_id: str, after: int, lease: StreamLease) -> web.StreamResponse:
        """The run's events as SSE: ``id`` is the seq, ``event`` the type, ``data`` the event's JSON as stored (of
        every type, those this version does not know too, so the seqs have no gap); at the token's expiry an
        ``error`` event (``unauthorized``) ends it, and the client resumes with a new token."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        gauge = self.streams.labels(transport="sse")
        counter = self.delivered.labels(transport="sse")
        gauge.inc()

        async def keepalive() -> None:  # also finds out, within one idle period, that a client left
            await response.write(b": keepalive\n\n")

        try:
            async with lease.until_expiry(), contextlib.aclosing(
                    self.client.follow_as_stored(run_id, after, on_idle=keepalive)) as events:
                async for event, raw in events:  # a type this version does not know too: no seq is left out
                    await response.write(b"id: %d\nevent: %s\ndata: %s\n\n" % (
                        event.seq, stored_type(event).encode(), raw))
                    counter.inc()
        except TimeoutError:
            if not lease.expired:
                raise
            with contextlib.suppress(ConnectionResetError, ConnectionError):
                await response.write(b"event: error\ndata: %s\n\n" % error_encoder.encode(lease.error()))
        except (ConnectionResetError, ConnectionError):
            pass  # the client left; it resumes with Last-Event-ID
        finally:
            gauge.dec()
        with contextlib.suppress(ConnectionResetError, ConnectionError):
            await response.write_eof()
        return response

    async def cancel(self, request: web.Request) -> web.Response:
        run_id = await self.readable(request, "cancel")
        if isinstance(run_id, web.Response):
            return run_id
        reason = request.query.get("reason", "cancelled by client")[:200]
        reply = await self.client.cancel(run_id, reason)
        if isinstance(reply, Error):
            return error_response(reply)
        return web.json_response({"run_id": run_id, "cancelling": True}, status=202)

    async def agents(self, request: web.Request) -> web.Response:
        try:
            identity = self.authenticator.require(request)
        except StreamingError as exc:
            return gateway_error_response(exc)
        reply = await self.client.agents()
        if isinstance(reply, Error):
            return error_response(reply)
        assert isinstance(reply, AgentList)
        shown = msgspec.structs.replace(reply, agents=access.visible_agents(identity, reply.agents))
        return web.Response(body=msgspec.json.encode(shown), content_type="application/json")

