"""Cancel requests (``<prefix>.runs.cancel.<run id>``, to every runner): the runner holding the run answers."""

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
                   reply: Callable[[Msg, msgspec.Struct], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
    """The subscription callback: cancel the run if this runner holds it (else stay silent)."""
    async def on_cancel(msg: Msg) -> None:
        run_id = decode_token(msg.subject.rsplit(".", 1)[-1])
        job = jobs.get(run_id)
        if job is None or not is_run_id(run_id):
            return  # not ours: the runner owning it answers
        with genai.cancel_request(msg.headers, run_id=run_id, run_trace=job.writer.trace):
            await cancel(msg, job)

    async def cancel(msg: Msg, job: RunJob) -> None:
        run_id = job.run_id
        reason = "cancelled"
        if msg.data:
            try:
                reason = cancel_run_decoder.decode(msg.data).reason
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await reply(msg, Error(code=ErrorCode.BAD_REQUEST, message=f"malformed cancel: {exc}", ref=run_id))
                return
        metrics.cancels.inc()
        if job.cancel_reason is None:
            job.cancel_reason = reason  # a run not accepted yet sees it before its first step
            if job.accepted and job.task is not None:
                job.task.cancel()
        await reply(msg, CancelAccepted(run_id=run_id))
    return on_cancel
