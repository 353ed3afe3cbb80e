"""The gateway's jobs extension: REST ``/v1/jobs`` forwarded to the scheduler over NATS request/reply."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from proto.errors import Error, ErrorCode
from proto.jobs import JobAccepted, RecurringJob, enqueue_decoder, jobs_encoder
from services.gateway.connection import Connection
from services.gateway.context import GatewayContext
from services.gateway.errors import BadMessage, Forbidden, GatewayError, MessageTooLarge
from services.gateway.extension import Handlers
from services.gateway.responses import error_response
from shared.clients.jobs import JobsClient
from shared.jobs.errors import JobError
from shared.service.settings import Env

_add_recurring = msgspec.json.Decoder(RecurringJob)


class JobsExtension:
    """``POST /v1/jobs`` (the body is an ``EnqueueJob`` without its tag), ``GET``/``DELETE /v1/jobs/{id}``
    (status and result / cancel), ``GET /v1/jobs/stats``, ``GET``/``DELETE /v1/jobs/dead`` (list / purge),
    ``POST /v1/jobs/dead/retry``, and ``GET``/``PUT``/``DELETE /v1/jobs/recurring[/{name}]``.

    Every route needs the caller's identity when the gateway requires auth; enqueueing a type needs
    ``identity.may("job", job_type)``. Answers are the scheduler's JSON replies; errors are its typed errors
    with a matching HTTP status. ``?queue=`` picks a named queue (default: the scheduler's first).
    """

    name = "jobs"

    def __init__(self, ctx: GatewayContext, *, environ: Mapping[str, str] | None = None) -> None:
        env = Env(environ)
        self.ctx = ctx
        self.handles: Handlers = {}  # jobs are HTTP-only for now
        self.timeout = env.number("GATEWAY_JOBS_TIMEOUT", 5.0, min=0.1, max=300)
        self.max_body = env.integer("GATEWAY_JOBS_MAX_BODY_BYTES", 1024 * 1024 + 4096, min=256)
        self._client: JobsClient | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/jobs", self.enqueue),
            web.get("/v1/jobs/stats", self.stats),
            web.get("/v1/jobs/dead", self.dead),
            web.delete("/v1/jobs/dead", self.purge_dead),
            web.post("/v1/jobs/dead/retry", self.retry_dead),
            web.get("/v1/jobs/recurring", self.list_recurring),
            web.put("/v1/jobs/recurring/{name}", self.add_recurring),
            web.delete("/v1/jobs/recurring/{name}", self.remove_recurring),
            web.get("/v1/jobs/{job_id}", self.get),
            web.delete("/v1/jobs/{job_id}", self.cancel),
        ]

    async def start(self) -> None:
        self._client = JobsClient(self.ctx.nc, prefix=self.ctx.runtime.prefix, timeout=self.timeout)

    async def stop(self) -> None:
        self._client = None

    async def on_disconnect(self, conn: Connection) -> None:
        return None

    # ---- routes ----------------------------------------------------------------------------------------------

    async def enqueue(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            try:
                job = enqueue_decoder.decode(await self._body(request))
            except msgspec.MsgspecError as exc:
                raise BadMessage(f"not a job: {exc}") from None
            identity = self.ctx.authenticator.require(request)
            if not identity.may("job", job.job_type):
                raise Forbidden("job", job.job_type)
            job = msgspec.structs.replace(job, queue=job.queue or request.query.get("queue"))
            reply = await client.request(job)
            accepted = reply if isinstance(reply, JobAccepted) else None
            return _json(reply, 200 if accepted is not None and accepted.duplicate else 202)

        return await self._guard(request, call, authenticated=False)

    async def get(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda c: _ok(c.get_job(request.match_info["job_id"])))

    async def cancel(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda c: _ok(c.cancel_job(request.match_info["job_id"])))

    async def stats(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda c: _ok(c.stats()))

    async def dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            offset, limit = _int(request, "offset", 0), _int(request, "limit", 100)
            return _json(await client.dead_jobs(offset=offset, limit=limit))

        return await self._guard(request, call)

    async def retry_dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            ids = await self._ids(request)
            return _json({"count": await client.retry_dead_jobs(ids)})

        return await self._guard(request, call)

    async def purge_dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            ids = await self._ids(request)
            return _json({"count": await client.purge_dead_jobs(ids)})

        return await self._guard(request, call)

    async def list_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            return _json({"schedules": await client.list_recurring()})

        return await self._guard(request, call)

    async def add_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            body = await self._body(request)
            try:
                fields = msgspec.json.decode(body)
                if not isinstance(fields, dict):
                    raise BadMessage("the body must be a JSON object")
                spec = _add_recurring.decode(msgspec.json.encode({**fields, "name": request.match_info["name"]}))
            except msgspec.MsgspecError as exc:
                raise BadMessage(f"not a recurring job: {exc}") from None
            saved = await client.add_recurring(spec.name, spec.job_type, spec.data, cron=spec.cron,
                                               priority=spec.priority.value, retry_count=spec.retry_count,
                                               retry_delay=spec.retry_delay)
            return _json(saved)

        return await self._guard(request, call)

    async def remove_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient) -> web.Response:
            await client.remove_recurring(request.match_info["name"])
            return web.Response(status=204)

        return await self._guard(request, call)

    # ---- plumbing --------------------------------------------------------------------------------------------

    async def _guard(self, request: web.Request, call: Any, *, authenticated: bool = True) -> web.Response:
        """Authenticate, pick the queue, run ``call``; typed errors become JSON errors with their status."""
        if self._client is None:
            return _error(ErrorCode.UNAVAILABLE, "the gateway is not connected to NATS yet", 503)
        try:
            if authenticated:
                self.ctx.authenticator.require(request)
            client = self._client
            queue = request.query.get("queue")
            if queue is not None:
                client = JobsClient(client.nc, prefix=self.ctx.runtime.prefix, queue=queue, timeout=self.timeout)
            response: web.Response = await call(client)
            return response
        except GatewayError as exc:
            return error_response(exc)
        except JobError as exc:
            return error_response(exc, headers={"Retry-After": "1"} if exc.code is ErrorCode.OVERLOADED else None)

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise MessageTooLarge(request.content_length, self.max_body)
        body = await request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise MessageTooLarge(len(body), self.max_body)
        return body

    async def _ids(self, request: web.Request) -> list[str] | None:
        """``{"job_ids": [...]}`` in the body; none (or an empty body) means all."""
        body = await self._body(request)
        if not body.strip():
            return None
        try:
            fields = msgspec.json.decode(body, type=dict[str, list[str] | None])
        except msgspec.MsgspecError as exc:
            raise BadMessage(f"expected {{\"job_ids\": [...]}}: {exc}") from None
        return fields.get("job_ids")


async def _ok(reply: Any) -> web.Response:
    return _json(await reply)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=jobs_encoder.encode(value), status=status, content_type="application/json")


def _error(code: ErrorCode, message: str, status: int) -> web.Response:
    return web.Response(body=jobs_encoder.encode(Error(code=code, message=message)), status=status,
                        content_type="application/json")


def _int(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        return max(0, int(value))
    except ValueError:
        raise BadMessage(f"?{name}= must be an integer") from None

