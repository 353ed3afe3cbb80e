"""Publishing job lifecycle events and dispatch nudges over NATS (best effort: Redis stays the truth)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from nats.aio.client import Client as NATS

from proto.jobs import (
    LIFECYCLE_EVENT_NAMES,
    JobCancelRequested,
    JobLifecycleEvent,
    JobsReady,
    JobsScheduled,
    jobs_encoder,
)
from proto.subjects import Subjects

log = logging.getLogger("raaf.jobs")


class JobSignals:
    """Everything a queue says over NATS. Without a connection (or while it is down) it stays silent.

    Losing one of these messages never loses a job: nudges only save a poll, and lifecycle events are telemetry.
    """

    def __init__(self, nc: NATS | None, subjects: Subjects, queue: str, *, lifecycle: bool = True) -> None:
        self.nc = nc
        self.subjects = subjects
        self.queue = queue
        self.lifecycle = lifecycle
        self.dropped = 0
        self._event_subjects = {cls: subjects.job_lifecycle(name) for cls, name in LIFECYCLE_EVENT_NAMES.items()}

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def _publish(self, subject: str, payload: bytes) -> None:
        if self.nc is None:
            return
        try:
            await self.nc.publish(subject, payload)
        except Exception as exc:  # disconnected with a full reconnect buffer, or closing
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("dropped %d job signals (%s)", self.dropped, exc)

    async def event(self, event: JobLifecycleEvent) -> None:
        if self.lifecycle and self.nc is not None:
            await self._publish(self._event_subjects[type(event)], jobs_encoder.encode(event))

    async def events(self, events: Iterable[JobLifecycleEvent]) -> None:
        if self.lifecycle and self.nc is not None:
            for event in events:
                await self._publish(self._event_subjects[type(event)], jobs_encoder.encode(event))

    async def ready(self, counts: dict[str, int]) -> None:
        """Nudge one worker of each type's queue group that ``count`` jobs wait."""
        for job_type, count in counts.items():
            if count > 0:
                await self._publish(self.subjects.job_dispatch_queue(self.queue, job_type),
                                    jobs_encoder.encode(JobsReady(queue=self.queue, job_type=job_type, count=count)))

    async def cancel(self, job_id: str) -> None:
        await self._publish(self.subjects.job_cancel(self.queue),
                            jobs_encoder.encode(JobCancelRequested(queue=self.queue, job_id=job_id)))

    async def scheduled(self, run_at_ms: int) -> None:
        await self._publish(self.subjects.job_wake(self.queue),
                            jobs_encoder.encode(JobsScheduled(queue=self.queue, run_at=run_at_ms / 1000)))
