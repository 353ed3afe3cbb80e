"""A run request's limits against the runner's settings, and the provider retry policy it gets."""

from __future__ import annotations

from proto.runs import RunRequest
from services.agent_runner.errors import BadRunRequest
from services.agent_runner.provider import RetryPolicy
from services.agent_runner.settings import AgentRunnerSettings


def retry_policy(s: AgentRunnerSettings, request: RunRequest) -> RetryPolicy:
    retry_count = s.retry_count if request.retry_count is None else request.retry_count
    retry_delay = s.retry_delay if request.retry_delay is None else request.retry_delay
    return RetryPolicy(retry_count, retry_delay, s.retry_max_delay)


def check_limits(s: AgentRunnerSettings, request: RunRequest) -> None:
    """``BadRunRequest`` for a timeout, retries or turns beyond what the runner allows."""
    if request.timeout is not None and not 0 < request.timeout <= s.max_timeout:
        raise BadRunRequest(f"timeout must be within (0, {s.max_timeout:g}] seconds (RUN_MAX_TIMEOUT)")
    if request.retry_count is not None and not 0 <= request.retry_count <= s.max_retry_count:
        raise BadRunRequest(f"retry_count must be within 0..{s.max_retry_count} (RUN_MAX_RETRY_COUNT)")
    if request.retry_delay is not None and not 0 <= request.retry_delay <= s.retry_max_delay:
        raise BadRunRequest(f"retry_delay must be within 0..{s.retry_max_delay:g} (RUN_RETRY_MAX_DELAY)")
    if request.max_turns is not None and not 1 <= request.max_turns <= s.max_turns:
        raise BadRunRequest(f"max_turns must be within 1..{s.max_turns} (RUN_MAX_TURNS)")
