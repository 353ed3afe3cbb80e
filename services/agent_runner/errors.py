"""Errors of the agent-runner: each carries its wire ``ErrorCode`` and the facts behind it."""

from __future__ import annotations

from typing import ClassVar

from proto.errors import Error, ErrorCode


class RunError(Exception):
    """Base of the runner's errors; ``to_wire()`` is what the requester or the run's events see."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self, ref: str | None = None) -> Error:
        return Error(code=self.code, message=self.message, ref=ref)


class BadRunRequest(RunError):
    code = ErrorCode.BAD_REQUEST


class AgentNotFound(RunError):
    code = ErrorCode.NOT_FOUND

    def __init__(self, agent: str, known: list[str]) -> None:
        super().__init__(f"unknown agent {agent!r}; known agents: {', '.join(sorted(known)) or 'none'}")
        self.agent = agent
        self.known = known


class InputTooLarge(RunError):
    code = ErrorCode.TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"run request of {size} bytes is over the {limit}-byte limit (RUN_MAX_INPUT_BYTES)")
        self.size = size
        self.limit = limit


class PoolOverloaded(RunError):
    code = ErrorCode.OVERLOADED

    def __init__(self, pool_size: int, queue_size: int) -> None:
        super().__init__(f"all {pool_size} run slots and {queue_size} queue places are taken; try again later")
        self.pool_size = pool_size
        self.queue_size = queue_size


class DuplicateRun(RunError):
    code = ErrorCode.CONFLICT

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} already exists")
        self.run_id = run_id


class HandoverRefused(RunError):
    """A run offered by a draining runner could not be taken over (it moved on, ended, or changed owner)."""

    code = ErrorCode.CONFLICT

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(f"run {run_id!r} cannot be taken over: {reason}")
        self.run_id = run_id
        self.reason = reason


class RunnerDraining(RunError):
    code = ErrorCode.UNAVAILABLE


class ProviderFailed(RunError):
    code = ErrorCode.PROVIDER_ERROR

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1,
                 after_first_token: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.after_first_token = after_first_token


class MaxTurnsExceeded(RunError):
    code = ErrorCode.MAX_TURNS

    def __init__(self, max_turns: int) -> None:
        super().__init__(f"no final answer within {max_turns} turns")
        self.max_turns = max_turns


class RunTimedOut(RunError):
    code = ErrorCode.TIMEOUT

    def __init__(self, timeout: float) -> None:
        super().__init__(f"run did not finish within {timeout:g}s")
        self.timeout = timeout


class RunSuperseded(RunError):
    """Another writer (an orphan reaper) already wrote this run's next event: this runner must stop."""

    code = ErrorCode.CONFLICT

    def __init__(self, run_id: str, seq: int) -> None:
        super().__init__(f"run {run_id} event {seq} was written by another process")
        self.run_id = run_id
        self.seq = seq


class AgentConfigError(RunError):
    """The agents file or tools module cannot be used (raised at startup)."""

    code = ErrorCode.BAD_REQUEST


class StreamProcessorFailed(RunError):
    """The configured ``RAAF_STREAM_PROCESSOR`` raised on a text delta: the run stops rather than publish
    unprocessed text (a redacting processor must never be bypassed)."""

    code = ErrorCode.INTERNAL

    def __init__(self, processor: str, error: BaseException) -> None:
        super().__init__(f"stream processor {processor} failed: {type(error).__name__}: {error}")
        self.processor = processor
        self.error = error


class ClientToolClash(RunError):
    """A tool the client declared has the name of one the server runs (the agent's tools or a handoff)."""

    code = ErrorCode.CONFLICT

    def __init__(self, name: str) -> None:
        super().__init__(f"client tool {name!r} has the name of a server-side tool of this run; rename it")
        self.name = name
