"""The approval tests' agents, policy and runner processes (the restart tests' scripted model and tools)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from proto.approvals import DecideApproval, DecisionAccepted
from proto.errors import Error
from proto.runs import ApprovalRequested, RunEvent
from proto.subjects import encode_key
from shared.runs.registry import PARKED, RunRegistry
from shared.runs.state import RunStateStore
from tests.support.restart import restart_env
from tests.support.runs import Runs

# How long a parked run waits with no runner at all before it is approved: longer than GATEWAY_RUN_ORPHAN_GRACE
# (6 s) and several RUN_LEASE_TTLs (2 s here), so the killed runner's lease has surely expired and a follower's
# orphan check has run many times. The issue asks for 30 s; APPROVAL_TEST_WAIT=30 runs exactly that.
APPROVAL_WAIT = float(os.environ.get("APPROVAL_TEST_WAIT", "8"))

AGENTS_TOML = """
idempotent_tools = ["lookup"]

[[agents]]
name = "clerk"
instructions = "You keep notes and charge cards."
tools = ["note", "charge", "lookup"]

[[approval]]
tool = "charge"
when = { amount = "[0-9]{4,}" }     # charges of 1000 and more
approvers = ["auditor"]

[[approval]]
tool = "note"
when = { text = "urgent.*" }
deadline = 1.5

[[approval]]
tool = "note"
when = { text = "fatal.*" }
deadline = 1.5
outcome = "fail"
"""


def approvals_env(nats_url: str, mock_url: str, prefix: str, tmp_path: Path, instance: str, **extra: str
                  ) -> dict[str, str]:
    """A runner's environment with the approval rules above (the restart tools, their calls logged)."""
    return restart_env(nats_url, mock_url, prefix, tmp_path, instance, agents_toml=AGENTS_TOML,
                       agents_file="approvals.toml", **extra)


async def until_requested(runs: Runs, run_id: str, timeout: float = 20.0) -> tuple[list[RunEvent],
                                                                                    ApprovalRequested]:
    """Follow the run until it asks for approval: the events so far and the request."""
    seen: list[RunEvent] = []
    async with asyncio.timeout(timeout), contextlib.aclosing(runs.client.follow(run_id)) as events:
        async for event, _ in events:
            seen.append(event)
            if isinstance(event, ApprovalRequested):
                return seen, event
    raise AssertionError(f"run {run_id} ended without asking for approval: {seen}")


async def until_parked(runs: Runs, run_id: str, timeout: float = 10.0) -> None:
    """Wait until the park is recorded (its owner is PARKED in the open-runs bucket)."""
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    async with asyncio.timeout(timeout):
        watcher = await registry.open_runs.watch(encode_key(run_id))
        try:
            async for entry in watcher:
                if entry is not None and entry.value == PARKED.encode():
                    return
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]


async def parked_state(runs: Runs, run_id: str) -> list[str] | None:
    """The call ids the run's durable state says still wait (None: not parked)."""
    states = RunStateStore(runs.nc.jetstream(), runs.client.subjects)
    assert await states.bind()
    state = await states.get(run_id)
    return None if state is None or state.parked is None else state.parked.pending


async def decide(runs: Runs, run_id: str, call_id: str, *, approved: bool, by: str = "tester",
                 message: str | None = None, arguments: str | None = None) -> DecisionAccepted | Error:
    return await runs.client.decide(DecideApproval(run_id=run_id, call_id=call_id, approved=approved, decided_by=by,
                                                   message=message, arguments=arguments))
