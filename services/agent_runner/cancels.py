"""Cancel requests (``<prefix>.runs.cancel.<run id>``, to every runner): the runner holding the run answers; a
parked run (no runner holds it) is ended by the one runner that claims it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import msgspec
from nats.aio.msg import Msg

from proto.errors import Error, ErrorCode
from proto.runs import CancelAccepted, cancel_run_decoder, is_run_id
from proto.subjects import decode_token
from services.agent_runner.engine import RunJob
from services.agent_runner.metrics import RunnerMetrics
from shared.tracing import genai


def cancel_handler(jobs: Mapping[str, RunJob], metrics: RunnerMetrics,
                   reply: Callable[[Msg, msgspec.Struct], Awaitable[None]],
                   parked: Callable[[str, str], Awaitable[bool]] | None = None) -> Callable[[Msg], Awaitable[None]]:
    """The subscription callback: cancel the run if this runner holds it, or end it if it is parked and this
    runner claims it (``parked(run_id, reason)``); else stay silent."""
    async def on_cancel(msg: Msg) -> None:
        run_id = decode_token(msg.subject.rsplit(".", 1)[-1])
        if not is_run_id(run_id):
            return
        job = jobs.get(run_id)
        if job is None:
            if parked is not None:
                await cancel_parked(msg, run_id, parked)
            return  # not ours: the runner owning it answers
        with genai.cancel_request(msg.headers, run_id=run_id, run_trace=job.writer.trace):
            await cancel(msg, job)

    async def reason_of(msg: Msg, run_id: str) -> str | None:
        if not msg.data:
            return "cancelled"
        try:
            return cancel_run_decoder.decode(msg.data).reason
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await reply(msg, Error(code=ErrorCode.BAD_REQUEST, message=f"malformed cancel: {exc}", ref=run_id))
            return None

    async def cancel_parked(msg: Msg, run_id: str, end: Callable[[str, str], Awaitable[bool]]) -> None:
        try:
            reason = cancel_run_decoder.decode(msg.data).reason if msg.data else "cancelled"
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # the runner holding the run, if any, answers the malformed cancel
        try:
            ended = await end(run_id, reason)
        except Exception as exc:  # claimed, and it could not be ended: it is parked again
            await reply(msg, Error(code=ErrorCode.INTERNAL, message=f"the cancel failed: {exc}", ref=run_id))
            return
        if ended:
            metrics.cancels.inc()
            await reply(msg, CancelAccepted(run_id=run_id))

    async def cancel(msg: Msg, job: RunJob) -> None:
        run_id = job.run_id
        reason = await reason_of(msg, run_id)
        if reason is None:
            return
        metrics.cancels.inc()
        if job.cancel_reason is None:
            job.cancel_reason = reason  # a run not accepted yet sees it before its first step
            if job.accepted and job.task is not None:
                job.task.cancel()
        await reply(msg, CancelAccepted(run_id=run_id))
    return on_cancel
