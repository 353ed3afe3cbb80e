"""Validated job requests and the limits every path (Python API, NATS, HTTP) checks before touching Redis."""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from croniter import croniter

from proto.jobs import Priority
from shared.jobs.errors import (
    invalid_job_data,
    invalid_job_id,
    invalid_job_type,
    invalid_priority,
    invalid_retry_policy,
    invalid_schedule,
    payload_too_large,
    schedule_in_past,
)
from shared.tracing import traceparent

_JOB_TYPE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_JOB_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
_QUEUE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_encoder = msgspec.json.Encoder()
MAX_RETRY_COUNT = 100
_ID_BYTES = 16  # a job id: 128 random bits, 32 hex digits (a uuid4's length)


class _RandomIds:
    """Random job ids from ``os.urandom``, read 256 ids at a time: one system call per 256 jobs, not per job."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        os.register_at_fork(after_in_child=self.forget)  # a child must never hand out its parent's ids

    def forget(self) -> None:
        self._pool, self._at = b"", 0

    def next(self) -> str:
        if self._at >= len(self._pool):
            self._pool, self._at = os.urandom(_ID_BYTES * 256), 0
        start = self._at
        self._at += _ID_BYTES
        return self._pool[start : self._at].hex()


_ids = _RandomIds()
MAX_RETRY_DELAY = 7 * 24 * 3600.0


@dataclass(frozen=True, kw_only=True)
class JobLimits:
    """Per-queue limits, enforced before (payload) and inside (depths) the atomic Redis write."""

    max_payload_bytes: int = 1024 * 1024
    max_queue_depth: int = 100_000  # ready jobs per type; 0 = unlimited
    max_scheduled: int = 1_000_000  # delayed and backing-off jobs per queue; 0 = unlimited
    dead_letter_max: int = 10_000  # oldest dead jobs are dropped beyond this; 0 = unlimited
    result_ttl: float = 86_400.0  # seconds a finished job's record (and result) is kept
    require_known_type: bool = True  # refuse types no worker has registered
    # Durability, not size: enqueues and claims are acknowledged only once this many replicas have them (WAIT).
    wait_replicas: int = 0  # 0 = off: acknowledged once the primary has them
    wait_timeout: float = 1.0  # seconds WAIT may take before the write counts as unconfirmed


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """``retry_count`` retries after the first attempt, ``retry_delay * backoff ** (n - 1)`` apart, capped."""

    retry_count: int = 3
    retry_delay: float = 5.0
    backoff: float = 2.0
    max_delay: float = 300.0

    def delay_after(self, attempt: int, base_delay: float | None = None) -> float:
        base = self.retry_delay if base_delay is None else base_delay
        return float(min(self.max_delay, base * self.backoff ** max(0, attempt - 1)))


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job ready to be written: every field checked, data already JSON (a Struct: cheap to build per job)."""

    job_id: str
    job_type: str
    data: bytes
    priority: Priority
    max_attempts: int
    retry_delay_ms: int
    run_at_ms: int = 0  # absolute (unix ms); 0 = none
    delay_ms: int = 0  # relative to the Redis clock; 0 = none
    registers_type: bool = False  # the enqueuer handles this type itself
    trace: str = ""  # the enqueuing span's traceparent ('' while tracing is off): the job's span links to it
    owner: str | None = None  # the identity the job belongs to


def check_job_type(job_type: object) -> str:
    if not isinstance(job_type, str) or not _JOB_TYPE.fullmatch(job_type):
        raise invalid_job_type(str(job_type), "1-128 letters, digits, '_', '-' or '.'")
    return job_type


def check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise invalid_job_id(str(job_id), "1-200 letters, digits, '_', '-', '.' or ':'")
    return job_id


def check_queue_name(queue: str) -> str:
    if not _QUEUE.fullmatch(queue):
        raise ValueError(f"invalid queue name {queue!r}: 1-64 letters, digits, '_' or '-'")
    return queue


def check_priority(priority: object) -> Priority:
    if isinstance(priority, Priority):
        return priority
    try:
        return Priority(str(priority).lstrip(":"))  # the seed writes :high
    except ValueError:
        raise invalid_priority(str(priority)) from None


def encode_data(data: Any, limit: int) -> bytes:
    """JSON for job data or a result; NaN and infinities are refused rather than silently nulled."""
    try:
        raw = data if isinstance(data, msgspec.Raw) else _encoder.encode(data)
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise invalid_job_data(str(exc)) from None
    raw = bytes(raw)
    # msgspec writes NaN and infinities as null: without a null in the output there was none to look for.
    if b"null" in raw and not _finite(data):
        raise invalid_job_data("NaN and infinity are not JSON")
    if limit and len(raw) > limit:
        raise payload_too_large(len(raw), limit)
    return raw


def _finite(value: Any, depth: int = 0) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 64:
        return True
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v, depth + 1) for v in value)
    return True


def check_cron_interval(expression: str, min_seconds: float, *, setting: str = "GATEWAY_JOBS_MIN_CRON_INTERVAL"
                        ) -> None:
    """Refuse a cron schedule that fires more often than every ``min_seconds`` (0: any); a six-field cron can
    fire every second."""
    if min_seconds <= 0:
        return
    try:
        times = croniter(expression, time.time()).all_next(float)
        fires = [next(times) for _ in range(6)]
    except (ValueError, KeyError, TypeError):
        raise invalid_schedule(f"not a cron expression: {expression!r}") from None
    gap = min(b - a for a, b in itertools.pairwise(fires))
    if gap < min_seconds:
        raise invalid_schedule(f"cron {expression!r} fires every {gap:.0f}s; the least allowed is "
                                   f"{min_seconds:.0f}s ({setting})")


def check_retry(retry_count: int | None, retry_delay: float | None, default: RetryPolicy) -> tuple[int, float]:
    if retry_count is None and retry_delay is None:
        return _checked_default(default)
    return _check_retry(retry_count, retry_delay, default)


@functools.lru_cache(maxsize=64)
def _checked_default(policy: RetryPolicy) -> tuple[int, float]:
    """A policy's own count and delay, checked once rather than for every job that keeps them."""
    return _check_retry(None, None, policy)


def _check_retry(retry_count: int | None, retry_delay: float | None, default: RetryPolicy) -> tuple[int, float]:
    count = default.retry_count if retry_count is None else retry_count
    delay = default.retry_delay if retry_delay is None else retry_delay
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_RETRY_COUNT:
        raise invalid_retry_policy(f"retry_count must be an integer 0..{MAX_RETRY_COUNT}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_RETRY_DELAY:
        raise invalid_retry_policy(f"retry_delay must be 0..{MAX_RETRY_DELAY:.0f} seconds")
    return count, float(delay)


def run_time(at: datetime | float | None, in_: float | None, *, now: float | None = None) -> tuple[int, int]:
    """``(run_at_ms, delay_ms)`` for ``at=`` (absolute) or ``in_=`` (seconds from now); past times are errors."""
    if at is not None and in_ is not None:
        raise invalid_schedule("give at= or in_=, not both")
    if in_ is not None:
        if isinstance(in_, bool) or not isinstance(in_, int | float) or not math.isfinite(in_):
            raise invalid_schedule("in_ must be a finite number of seconds")
        if in_ < 0:
            current = time.time() if now is None else now
            raise schedule_in_past(current + in_, current)
        return 0, round(in_ * 1000)
    if at is None:
        return 0, 0
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise invalid_schedule("at= must be timezone-aware (or unix seconds)")
        stamp = at.timestamp()
    elif isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        stamp = float(at)
    else:
        raise invalid_schedule("at= must be a datetime or unix seconds")
    current = time.time() if now is None else now
    if stamp < current:
        raise schedule_in_past(stamp, current)
    return round(stamp * 1000), 0


def new_job(
    job_type: str,
    data: Any,
    *,
    priority: object = Priority.NORMAL,
    job_id: str | None = None,
    at: datetime | float | None = None,
    in_: float | None = None,
    retry_count: int | None = None,
    retry_delay: float | None = None,
    retry: RetryPolicy,
    limits: JobLimits,
    registers_type: bool = False,
    owner: str | None = None,
) -> NewJob:
    """Check everything about one job request; raises a typed :class:`~shared.jobs.errors.JobError`."""
    check_job_type(job_type)
    prio = check_priority(priority)
    jid = _ids.next() if job_id is None else check_job_id(job_id)
    count, delay = check_retry(retry_count, retry_delay, retry)
    run_at_ms, delay_ms = run_time(at, in_)
    return NewJob(
        job_id=jid,
        job_type=job_type,
        data=encode_data(data, limits.max_payload_bytes),
        priority=prio,
        max_attempts=count + 1,
        retry_delay_ms=round(delay * 1000),
        run_at_ms=run_at_ms,
        delay_ms=delay_ms,
        registers_type=registers_type,
        trace=traceparent(),
        owner=owner or None,
    )
