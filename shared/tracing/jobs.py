"""A job's span: its own trace, with a Link to the span that enqueued it (the ``traceparent`` kept with the job)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from shared.tracing.spans import linked_root


@contextlib.contextmanager
def job_span(*, queue: str, job_id: str, job_type: str, attempt: int, enqueued_by: bytes | None) -> Iterator[Span]:
    """A CONSUMER span ``process <job type>`` starting a new trace (a job may run long after, and many times)."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "raaf.jobs", "messaging.operation.type": "process", "messaging.destination.name": queue,
        "raaf.job.id": job_id, "raaf.job.type": job_type, "raaf.job.attempt": attempt}
    with linked_root("raaf.jobs", f"process {job_type}", enqueued_by, attributes, SpanKind.CONSUMER) as span:
        assert span is not None  # job spans are only started while tracing is on
        yield span


def job_outcome(span: Span, kind: str, detail: object) -> None:
    span.set_attribute("raaf.job.outcome", kind)
    if kind in ("error", "permanent"):
        span.set_status(Status(StatusCode.ERROR, str(detail)[:200]))
