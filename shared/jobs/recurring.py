"""RecurringSchedules: a job queue's cron schedules in Redis, fired exactly once each however many schedulers run."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
from croniter import croniter

from proto.jobs import RecurringJob, jobs_encoder, recurring_job_decoder
from shared.errors import StreamingError
from shared.jobs.errors import invalid_schedule
from shared.jobs.model import NewJob
from shared.jobs.scripts import recurring as scripts
from shared.jobs.store_base import StoreBase, as_str
from shared.jobs.store_results import Enqueued, enqueue_result

_RECURRING_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


class RecurringSchedules(StoreBase):
    """The recurring-schedule operations of :class:`~shared.jobs.store.JobStore`."""

    def _register_scripts(self) -> None:
        super()._register_scripts()
        self._fire_recurring = self._register(scripts.FIRE_RECURRING)
        self._due_recurring = self._register(scripts.DUE_RECURRING)
        self._set_recurring = self._register(scripts.SET_RECURRING)
        self._remove_recurring = self._register(scripts.REMOVE_RECURRING)

    async def add_recurring(self, spec: RecurringJob) -> RecurringJob:
        """Create or replace a cron schedule; its first run is the next cron time from now."""
        if not _RECURRING_NAME.fullmatch(spec.name):
            raise invalid_schedule(f"recurring name {spec.name!r}: 1-100 letters, digits, '_', '-' or '.'")
        now = datetime.now(UTC)
        first = next_cron_time(spec.cron, now.timestamp())
        stored = msgspec.structs.replace(spec, next_run_at=first)

        await self._run(self._set_recurring, [spec.name, jobs_encoder.encode(stored), round(first * 1000)])
        return stored

    async def remove_recurring(self, name: str) -> bool:
        return bool(await self._run(self._remove_recurring, [name]))

    async def list_recurring(self) -> list[RecurringJob]:
        async def read() -> list[RecurringJob]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(f"{self.base}cron")
                pipe.zrange(f"{self.base}cron_due", 0, -1, withscores=True)
                specs, due = await pipe.execute()
            next_at = {as_str(name): score / 1000 for name, score in due}
            out = []
            for name, raw in sorted(specs.items()):
                spec = recurring_job_decoder.decode(raw)
                out.append(msgspec.structs.replace(spec, next_run_at=next_at.get(as_str(name))))
            return out

        specs: list[RecurringJob] = await self._guard(read)
        return specs

    async def fire_due_recurring(self, limit: int = 100
                                 ) -> tuple[list[tuple[RecurringJob, Enqueued | StreamingError]], int]:
        """Enqueue every due recurring job once (safe with many schedulers); returns them and the next due ms."""
        reply = await self._run(self._due_recurring, [limit])
        now_ms, next_ms = int(reply[0]), int(reply[1])
        fired: list[tuple[RecurringJob, Enqueued | StreamingError]] = []
        for i in range(2, len(reply), 2):
            name, due_ms = as_str(reply[i]), int(float(reply[i + 1]))
            cron_key = f"{self.base}cron"
            raw = await self._guard(lambda: self.redis.hget(cron_key, name))  # noqa: B023 (awaited at once)
            if raw is None:
                continue
            spec = recurring_job_decoder.decode(raw)
            following = round(next_cron_time(spec.cron, max(due_ms, now_ms) / 1000) * 1000)
            next_ms = following if next_ms < 0 else min(next_ms, following)
            retry_delay_ms = round((spec.retry_delay if spec.retry_delay is not None else 0) * 1000)
            max_attempts = (spec.retry_count if spec.retry_count is not None else 0) + 1
            job_id = f"cron:{spec.name}:{due_ms}"
            out = await self._run(self._fire_recurring, [
                spec.name, due_ms, following, job_id, spec.job_type, spec.priority.value, bytes(spec.data),
                max_attempts, retry_delay_ms, self.limits.max_queue_depth, spec.owner or ""])
            if as_str(out[0]) != "fired":
                continue
            job = NewJob(job_id=job_id, job_type=spec.job_type, data=b"", priority=spec.priority,
                         max_attempts=max_attempts, retry_delay_ms=retry_delay_ms, owner=spec.owner)
            fired.append((spec, enqueue_result(job, as_str(out[1]), as_str(out[2]) or "queued", now_ms, self.limits)))
        return fired, next_ms


def next_cron_time(expression: str, after: float) -> float:
    """The first cron time strictly after ``after`` (unix seconds, UTC); six fields put seconds last."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise invalid_schedule(f"not a cron expression: {expression!r}")
    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(expression, start).get_next(float))
