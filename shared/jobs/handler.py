"""Job handlers: what one is, what it may ask about its running job, and one call of it turned into an outcome."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgspec

from proto.jobs import Priority
from shared.jobs.errors import is_permanent
from shared.jobs.model import encode_data
from shared.jobs.store_results import ClaimedJob

Handler = Callable[[Any], Any]
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running handler may ask about its job (see :func:`current_job`)."""

    job_id: str
    job_type: str
    queue: str
    attempt: int
    max_attempts: int
    priority: Priority
    owner: str | None = None  # the identity the job belongs to (what it starts runs as)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("raaf_current_job")


def current_job() -> JobContext:
    """The job the calling handler runs for; raises LookupError outside a handler."""
    return _current.get()


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    job_type: str
    fn: Handler
    is_async: bool
    timeout: float | None = None

    @classmethod
    def of(cls, job_type: str, fn: Handler, timeout: float | None) -> HandlerSpec:
        call = type(fn).__call__ if not inspect.isfunction(fn) and not inspect.ismethod(fn) else fn
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)
        return cls(job_type, fn, is_async, timeout)


@dataclass(slots=True)
class HeldJob:
    """A claimed job while this worker holds it: its task and why (if at all) it is being stopped."""

    job: ClaimedJob
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # cancel | lost | handback
    in_handler: bool = True
    entered: bool = False  # the task began (a task cancelled before its first step never runs its body)
    started: float = field(default_factory=time.perf_counter)


async def run_handler(held: HeldJob, spec: HandlerSpec, *, queue: str, pool: ThreadPoolExecutor | None,
                      max_result_bytes: int) -> tuple[str, Any]:
    """Call the handler on the job's data: ``(kind, value)`` with kind ok, error, permanent or a stop reason."""
    if held.stop_reason is not None:  # interrupted before it began
        return held.stop_reason, None
    job = held.job
    token = _current.set(JobContext(job.job_id, job.job_type, queue, job.attempt, job.max_attempts,
                                    job.priority, job.owner))
    try:
        data = _decoder.decode(job.data)
        if spec.is_async:
            if spec.timeout is None:
                result = await spec.fn(data)
            else:
                async with asyncio.timeout(spec.timeout):
                    result = await spec.fn(data)
        else:
            assert pool is not None
            context = contextvars.copy_context()
            result = await asyncio.get_running_loop().run_in_executor(pool, context.run, spec.fn, data)
        return "ok", encode_data(result, max_result_bytes)
    except asyncio.CancelledError:
        if held.stop_reason is None:  # the worker itself is being torn down
            held.stop_reason = "handback"
        return held.stop_reason, None
    except Exception as exc:
        if is_permanent(exc):  # checked first: a job_timeout is a TimeoutError too
            return "permanent", exc
        if isinstance(exc, TimeoutError):
            return "error", f"TimeoutError: handler ran longer than {spec.timeout}s"
        return "error", f"{type(exc).__name__}: {exc}"
    finally:
        _current.reset(token)
