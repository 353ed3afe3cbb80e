"""The gateway's jobs extension: REST ``/v1/jobs`` forwarded to the scheduler over NATS request/reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from proto.errors import Error, ErrorCode
from proto.jobs import JobAccepted, RecurringJob, enqueue_decoder, jobs_encoder
from services.gateway.connection import Connection
from services.gateway.context import GatewayContext
from services.gateway.errors import bad_message, message_too_large
from services.gateway.extension import Handlers
from services.gateway.responses import error_response
from services.gateway.runs_http import RunAccess
from shared import access
from shared.clients.jobs import JobsClient
from shared.errors import StreamingError
from shared.identity import Identity
from shared.jobs.agent_job import AGENT_JOB_TYPE
from shared.jobs.errors import recurring_job_not_found
from shared.jobs.model import check_cron_interval
from shared.json_depth import check_json_depth
from shared.service.settings import Env

_add_recurring = msgspec.json.Decoder(RecurringJob)
Call = Callable[[JobsClient, Identity], Awaitable[web.Response]]


class JobsExtension:
    """``POST /v1/jobs`` (the body is an ``EnqueueJob`` without its tag), ``GET``/``DELETE /v1/jobs/{id}``
    (status and result / cancel), ``GET /v1/jobs/stats``, ``GET``/``DELETE /v1/jobs/dead`` (list / purge),
    ``POST /v1/jobs/dead/retry``, and ``GET``/``PUT``/``DELETE /v1/jobs/recurring[/{name}]``.

    ``shared.access`` decides each: a job or schedule belongs to the identity that created it (reads, cancels
    and deletes are the owner's or an admin's); creating one needs the job grant for its type (a ``run_agent``
    job also the grants for its agent and its event); dead letters, statistics and ``?queue=`` are for admins.
    Ids and names a client chooses live in its namespace. Answers are the scheduler's JSON replies; errors
    are typed, with the HTTP status of their code.
    """

    name = "jobs"

    def __init__(self, ctx: GatewayContext, *, runs: RunAccess, environ: Mapping[str, str] | None = None) -> None:
        env = Env(environ)
        self.ctx = ctx
        self.runs = runs  # a run_agent job is checked as a run start is: the same agents, grants and rate
        self.handles: Handlers = {}  # jobs are HTTP-only for now
        self.timeout = env.number("GATEWAY_JOBS_TIMEOUT", 5.0, min=0.1, max=300)
        self.max_body = env.integer("GATEWAY_JOBS_MAX_BODY_BYTES", 1024 * 1024 + 4096, min=256)
        self.min_cron_interval = env.number("GATEWAY_JOBS_MIN_CRON_INTERVAL", 60.0, min=0)
        self.restricted_events = env.items("GATEWAY_RESTRICTED_EVENTS")  # what a run_agent job may emit
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
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            try:
                job = enqueue_decoder.decode(await self._body(request))
            except msgspec.MsgspecError as exc:
                raise bad_message(f"not a job: {exc}") from None
            access.check_queue(identity, job.queue)
            data = await self._checked(identity, job.job_type, bytes(job.data))
            if job.job_type == AGENT_JOB_TYPE:
                self.runs.rate.take(identity)  # a run start like any other: GATEWAY_RUNS_PER_MINUTE
            job_id = None if job.job_id is None else access.scoped_job_id(identity, job.job_id)
            job = msgspec.structs.replace(job, queue=job.queue or client.queue, job_id=job_id, owner=identity.subject,
                                          data=msgspec.Raw(data))
            reply = await client.request(job)
            accepted = reply if isinstance(reply, JobAccepted) else None
            return _json(reply, 200 if accepted is not None and accepted.duplicate else 202)

        return await self._guard(request, call)

    async def get(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            info = await client.get_job(request.match_info["job_id"])
            access.check_job(identity, info, "read")
            return _json(info)

        return await self._guard(request, call)

    async def cancel(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            job_id = request.match_info["job_id"]
            access.check_job(identity, await client.get_job(job_id), "cancel")  # an owner never changes
            return _json(await client.cancel_job(job_id))

        return await self._guard(request, call)

    async def stats(self, request: web.Request) -> web.Response:
        return await self._guard(request, lambda client, _: _ok(client.stats()), admin=True)

    async def dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            offset, limit = _int(request, "offset", 0), _int(request, "limit", 100)
            return _json(await client.dead_jobs(offset=offset, limit=limit))

        return await self._guard(request, call, admin=True)

    async def retry_dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            ids = await self._ids(request)
            return _json({"count": await client.retry_dead_jobs(ids)})

        return await self._guard(request, call, admin=True)

    async def purge_dead(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            ids = await self._ids(request)
            return _json({"count": await client.purge_dead_jobs(ids)})

        return await self._guard(request, call, admin=True)

    async def list_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            return _json({"schedules": access.visible_schedules(identity, await client.list_recurring())})

        return await self._guard(request, call)

    async def add_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            body = await self._body(request)
            name, existing = await self._schedule(client, identity, request.match_info["name"])
            try:
                fields = msgspec.json.decode(body)
                if not isinstance(fields, dict):
                    raise bad_message("the body must be a JSON object")
                spec = _add_recurring.decode(msgspec.json.encode({**fields, "name": name}))
            except msgspec.MsgspecError as exc:
                raise bad_message(f"not a recurring job: {exc}") from None
            spec = msgspec.structs.replace(spec, data=msgspec.Raw(await self._checked(identity, spec.job_type,
                                                                                      bytes(spec.data))))
            if existing is not None:
                access.check_schedule(identity, existing, "replace")
            check_cron_interval(spec.cron, self.min_cron_interval)
            owner = existing.owner if existing is not None else identity.subject  # an admin's edit keeps it
            saved = await client.add_recurring(spec.name, spec.job_type, spec.data, cron=spec.cron,
                                               priority=spec.priority.value, retry_count=spec.retry_count,
                                               retry_delay=spec.retry_delay, owner=owner)
            return _json(saved)

        return await self._guard(request, call)

    async def remove_recurring(self, request: web.Request) -> web.Response:
        async def call(client: JobsClient, identity: Identity) -> web.Response:
            name, existing = await self._schedule(client, identity, request.match_info["name"])
            if existing is None:
                raise recurring_job_not_found(name)
            access.check_schedule(identity, existing, "delete")
            await client.remove_recurring(name)
            return web.Response(status=204)

        return await self._guard(request, call)

    # ---- plumbing --------------------------------------------------------------------------------------------

    async def _checked(self, identity: Identity, job_type: str, data: bytes) -> bytes:
        """``shared.access.check_job_data`` against the runners' agents (for a ``run_agent`` job): the data to store."""
        configured = await self.runs.configured_agents() if job_type == AGENT_JOB_TYPE else None
        return access.check_job_data(identity, job_type, data, restricted_events=self.restricted_events,
                                     configured=configured)

    @staticmethod
    async def _schedule(client: JobsClient, identity: Identity, name: str) -> tuple[str, RecurringJob | None]:
        """The stored name a path names, and its schedule: the name as given when one exists (the owner check
        follows), else the name in the caller's namespace."""
        schedules = {s.name: s for s in await client.list_recurring()}
        if name in schedules:
            return name, schedules[name]
        scoped = access.scoped_schedule_name(identity, name)
        return scoped, schedules.get(scoped)

    async def _guard(self, request: web.Request, call: Call, *, admin: bool = False) -> web.Response:
        """Authenticate, pick the queue (admins only), run ``call``; typed errors become JSON errors."""
        if self._client is None:
            return _error(ErrorCode.UNAVAILABLE, "the gateway is not connected to NATS yet", 503)
        try:
            identity = self.ctx.authenticator.require(request)
            if admin:
                access.require_admin(identity, "jobs", f"{request.method} {request.path}:")
            client = self._client
            queue = request.query.get("queue")
            if queue is not None:
                access.check_queue(identity, queue)
                client = JobsClient(client.nc, prefix=self.ctx.runtime.prefix, queue=queue, timeout=self.timeout)
            return await call(client, identity)
        except StreamingError as exc:
            return error_response(exc, headers={"Retry-After": "1"} if exc.code is ErrorCode.OVERLOADED else None)

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise message_too_large(request.content_length, self.max_body)
        body = await request.content.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise message_too_large(len(body), self.max_body)
        check_json_depth(body, self.ctx.settings.max_json_depth)
        return body

    async def _ids(self, request: web.Request) -> list[str] | None:
        """``{"job_ids": [...]}`` in the body; none (or an empty body) means all."""
        body = await self._body(request)
        if not body.strip():
            return None
        try:
            fields = msgspec.json.decode(body, type=dict[str, list[str] | None])
        except msgspec.MsgspecError as exc:
            raise bad_message(f"expected {{\"job_ids\": [...]}}: {exc}") from None
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
        raise bad_message(f"?{name}= must be an integer") from None

