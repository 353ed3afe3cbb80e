"""Errors of the agent-runner: each is the ``shared.errors`` class of its wire code; the functions below build the
common ones so each message is written once."""

from __future__ import annotations

import enum

from proto.errors import ErrorCode
from shared.errors import BadRequestError, ConflictError, ProviderError, StreamingError


class RunErrorKind(enum.StrEnum):
    """The runner's situations that code tells apart from others of their wire code."""

    SUPERSEDED = "run_superseded"


# The names the runner's errors had: each is the class of its wire code. ``RunError(message, code=...)`` raises
# the base with any code (the wire and ``except`` see the same class as :func:`shared.errors.error_for` builds).
RunError = StreamingError
BadRunRequest = BadRequestError  # a run request the runner cannot take (malformed, over a limit, an unknown agent)
AgentConfigError = BadRequestError  # the agents file or tools module cannot be used (raised at startup)
RunSuperseded = ConflictError
ProviderFailed = ProviderError


def run_superseded(run_id: str, seq: int) -> ConflictError:
    """Another writer (an orphan reaper) already wrote this run's next event: this runner must stop."""
    return ConflictError(f"run {run_id} event {seq} was written by another process", kind=RunErrorKind.SUPERSEDED,
                         details={"run_id": run_id, "seq": seq})


def is_superseded(exc: BaseException) -> bool:
    return isinstance(exc, ConflictError) and exc.kind == RunErrorKind.SUPERSEDED


def provider_failed(message: str, *, status: int | None = None, attempts: int = 1,
                    after_first_token: bool = False) -> ProviderError:
    """The model endpoint failed (``upstream_status`` its HTTP status); ``after_first_token`` says the client
    already saw part of the answer."""
    return ProviderError(message, details={"upstream_status": status, "attempts": attempts,
                                           "after_first_token": after_first_token})




def agent_not_found(agent: str, known: list[str]) -> RunError:
    return RunError(f"unknown agent {agent!r}; known agents: {', '.join(sorted(known)) or 'none'}",
                    code=ErrorCode.NOT_FOUND)


def input_too_large(size: int, limit: int) -> RunError:
    return RunError(f"run request of {size} bytes is over the {limit}-byte limit (RUN_MAX_INPUT_BYTES)",
                    code=ErrorCode.TOO_LARGE)


def pool_overloaded(pool_size: int, queue_size: int) -> RunError:
    return RunError(f"all {pool_size} run slots and {queue_size} queue places are taken; try again later",
                    code=ErrorCode.OVERLOADED)


def duplicate_run(run_id: str) -> RunError:
    return RunError(f"run {run_id!r} already exists", code=ErrorCode.CONFLICT)


def handover_refused(run_id: str, reason: str) -> RunError:
    """A run offered by a draining runner could not be taken over (it moved on, ended, or changed owner)."""
    return RunError(f"run {run_id!r} cannot be taken over: {reason}", code=ErrorCode.CONFLICT)


def runner_draining() -> RunError:
    return RunError("the agent-runner is shutting down; retry", code=ErrorCode.UNAVAILABLE)


def max_turns_exceeded(max_turns: int) -> RunError:
    return RunError(f"no final answer within {max_turns} turns", code=ErrorCode.MAX_TURNS)


def run_timed_out(timeout: float) -> RunError:
    return RunError(f"run did not finish within {timeout:g}s", code=ErrorCode.TIMEOUT)


def stream_processor_failed(processor: str, error: BaseException) -> RunError:
    """The configured ``RAAF_STREAM_PROCESSOR`` raised on a text delta: the run stops rather than publish
    unprocessed text (a redacting processor must never be bypassed)."""
    return RunError(f"stream processor {processor} failed: {type(error).__name__}: {error}", code=ErrorCode.INTERNAL)


def client_tool_clash(name: str) -> RunError:
    """A tool the client declared has the name of one the server runs (the agent's tools or a handoff)."""
    return RunError(f"client tool {name!r} has the name of a server-side tool of this run; rename it",
                    code=ErrorCode.CONFLICT)


def outcome_unknown(tool: str) -> str:
    """What the model sees for a call of a tool that is not idempotent whose runner died while it ran."""
    return (f"error: the outcome of {tool} is unknown: the agent-runner running it stopped before it reported, "
            "so it may or may not have taken effect; it was not run again. Check before calling it again.")


def restarts_exhausted(restarts: int) -> RunError:
    return RunError(f"the run's agent-runner stopped again after {restarts} restart(s) (RUN_MAX_RESTARTS)",
                    code=ErrorCode.RESTARTS_EXHAUSTED)


def run_not_open(run_id: str) -> RunError:
    return RunError(f"run {run_id} is not open (it ended, or is unknown)", code=ErrorCode.NOT_FOUND, ref=run_id)


def not_waiting(run_id: str) -> RunError:
    """A decision for a run that is not parked now: it runs, or another decision on it is being applied."""
    return RunError(f"run {run_id} is not waiting for a decision now (it runs, or another decision is being "
                    "applied); try again", code=ErrorCode.CONFLICT, ref=run_id)


def already_decided(run_id: str, call_id: str) -> RunError:
    return RunError(f"tool call {call_id} of run {run_id} was decided already", code=ErrorCode.CONFLICT, ref=run_id)


def no_such_approval(run_id: str, call_id: str) -> RunError:
    return RunError(f"run {run_id} has no tool call {call_id} waiting for a decision", code=ErrorCode.NOT_FOUND,
                    ref=run_id)
