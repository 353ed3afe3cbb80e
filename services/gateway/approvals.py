"""Decisions on parked runs' tool calls: ``run_decide`` over WebSocket and ``POST /v1/runs/{id}/approvals/{call}``.

Both check ``shared.access.check_decide`` against the run's stored ``run_approval_requested`` and send the
decision to the runners (``RunClient.decide``); the runner that takes it logs it and continues the run.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from proto.approvals import DecideApproval, DecisionAccepted, RunDecide, decision_body_decoder
from proto.errors import Error, ErrorCode
from proto.runs import is_run_id
from services.gateway.connection import Connection
from services.gateway.errors import GatewayError
from services.gateway.responses import error_response as gateway_error_response
from services.gateway.runs_http import RunRoutes, error_response
from shared import access
from shared.errors import StreamingError
from shared.identity import Identity
from shared.tracing import TRACING, link_from, tracer

_encoder = msgspec.json.Encoder()


class ApprovalRoutes:
    """Who may decide, and passing the decision on: shared by the WebSocket message and the REST route."""

    def __init__(self, routes: RunRoutes) -> None:
        self.runs = routes

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/runs/{run_id}/approvals/{call_id}", self.post)]

    async def decide(self, identity: Identity, run_id: str, call_id: str, *, approved: bool,
                     message: str | None = None, arguments: dict[str, Any] | None = None,
                     decided_by: str | None = None) -> DecisionAccepted | Error:
        """The decision's acceptance, or the typed error (``forbidden`` without the right; nothing changes); while
        tracing is on, in a ``decide_approval`` span linked to the run's span."""
        if not TRACING.on:
            return await self._decide(identity, run_id, call_id, approved=approved, message=message,
                                      arguments=arguments, decided_by=decided_by)
        run_trace = await self.runs.client.log.first_trace(run_id) if is_run_id(run_id) else None
        attributes: dict[str, AttributeValue] = {"raaf.run.id": run_id, "gen_ai.tool.call.id": call_id,
                                                 "raaf.approval.approved": approved}
        with tracer("raaf.gateway").start_as_current_span(
                "decide_approval", kind=SpanKind.SERVER, attributes=attributes,
                links=link_from((run_trace or {}).get("traceparent"))) as span:
            reply = await self._decide(identity, run_id, call_id, approved=approved, message=message,
                                       arguments=arguments, decided_by=decided_by)
            if isinstance(reply, Error):
                span.set_attribute("error.type", reply.code.value)
            return reply

    async def _decide(self, identity: Identity, run_id: str, call_id: str, *, approved: bool,
                      message: str | None, arguments: dict[str, Any] | None,
                      decided_by: str | None) -> DecisionAccepted | Error:
        if not is_run_id(run_id) or not call_id or len(call_id) > 128:
            return Error(code=ErrorCode.BAD_REQUEST, message="a decision needs a run id and a call id", ref=run_id)
        if approved and message is not None:
            message = None  # a message is for a rejection: the model reads it as the tool's output
        client = self.runs.client
        requested, decided = await client.approval_request(run_id, call_id)
        if requested is None:
            return Error(code=ErrorCode.NOT_FOUND, message=f"run {run_id} asked no approval of {call_id}",
                         ref=run_id)
        try:
            access.check_decide(identity, run_id, requested)
        except StreamingError as exc:
            return exc.to_wire()
        if decided:
            return Error(code=ErrorCode.CONFLICT, message=f"tool call {call_id} of run {run_id} was decided already",
                         ref=run_id)
        who = decided_by or identity.subject or ("admin" if access.is_admin(identity) else "anonymous")
        return await client.decide(DecideApproval(
            run_id=run_id, call_id=call_id, approved=approved, decided_by=who, message=message,
            arguments=None if arguments is None or not approved else _encoder.encode(arguments).decode()))

    async def on_message(self, conn: Connection, message: RunDecide) -> None:
        reply = await self.decide(conn.identity, message.run_id, message.call_id, approved=message.approved,
                                  message=message.message, arguments=message.arguments)
        if isinstance(reply, Error):
            await conn.send_error(reply.code, reply.message, message.id or message.run_id)
        else:
            await conn.send(msgspec.structs.replace(reply, ref=message.id))

    async def post(self, request: web.Request) -> web.Response:
        run_id, call_id = request.match_info["run_id"], request.match_info["call_id"]
        try:
            identity = self.runs.authenticator.require(request)
        except GatewayError as exc:
            return gateway_error_response(exc, run_id)
        raw = await self.runs.read_body(request)
        if isinstance(raw, Error):
            return error_response(raw)
        try:
            body = decision_body_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return error_response(Error(code=ErrorCode.BAD_REQUEST, message=f"malformed decision: {exc}"))
        reply = await self.decide(identity, run_id, call_id, approved=body.approved, message=body.message,
                                  arguments=body.arguments)
        if isinstance(reply, Error):
            return error_response(reply)
        return web.json_response(msgspec.to_builtins(reply), status=200)
