"""The ``resume_run`` span of every way a client follows a run again: a trace of its own, linked to the run's span."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from proto.runs import is_run_id
from shared.runs.log import RunLog
from shared.tracing import TRACING, linked_root


@contextlib.asynccontextmanager
async def resume_span(log: RunLog, run_id: str, after_seq: int, via: str) -> AsyncIterator[None]:
    """A SERVER span ``resume_run`` around a resume (``via``: websocket, sse, responses, ai_sdk), with a Link to
    the run's ``invoke_agent`` span, read from its first stored event; nothing while tracing is off."""
    if not TRACING.on:
        yield
        return
    run_trace = await log.first_trace(run_id) if is_run_id(run_id) else None
    attributes: dict[str, AttributeValue] = {"raaf.run.id": run_id, "raaf.run.after_seq": after_seq,
                                             "raaf.resume.via": via}
    with linked_root("raaf.gateway", "resume_run", (run_trace or {}).get("traceparent"), attributes,
                     kind=SpanKind.SERVER):
        yield
