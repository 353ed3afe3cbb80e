"""The restart tests' scripted model, agents and runner processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proto.runs import AgentList, RunEvent, TextDelta, ToolOutput
from proto.subjects import encode_key
from raaf.testing import Script, ToolCall
from shared.openai_mock.wire import ChatRequest
from shared.runs.log import Unknown, decode
from shared.runs.registry import RunRegistry
from tests.support.processes import ServiceProcess
from tests.support.runs import Runs, runner_env
from tests.support.waiting import eventually

AGENTS_TOML = """
idempotent_tools = ["lookup"]

[[agents]]
name = "clerk"
instructions = "You keep notes and charge cards."
tools = ["note", "charge", "lookup"]
"""

ANSWER_WORDS = 40  # the last turn's answer, streamed a word per token


def plan(text: str) -> list[ToolCall]:
    """The tool calls the scripted model makes, one per turn, from the user's message: ``note:x lookup:y ...``
    (``slowlookup:y``, ``slowcharge:5``: the call takes 30 s, long enough to kill its runner in it; ``locate:y``: a
    call of the client's own tool ``locate``, its arguments streamed in twelve pieces)."""
    calls = []
    for n, word in enumerate(text.split()):
        name, _, arg = word.partition(":")
        slow = 30 if name.startswith("slow") else 0
        name = name.removeprefix("slow")
        args: dict[str, Any] = ({"text": arg} if name == "note" else {"key": arg, "seconds": slow}
                                if name == "lookup" else {"place": arg} if name == "locate"
                                else {"amount": int(arg), "seconds": slow})
        calls.append(ToolCall(name=name, arguments=args, id=f"call_{n + 1}_{name}",
                              fragments=12 if name == "locate" else 2))
    return calls


def scripted_model(request: ChatRequest) -> Script:
    """Deterministic: the same conversation gets the same answer, so a restarted turn says what it said before.

    Turn n calls the n-th planned tool (with a short preamble); after the last one the model sums up what the
    tools answered in ``ANSWER_WORDS`` words."""
    user = next(m.text for m in request.messages if m.role == "user")
    results = [m.text for m in request.messages if m.role == "tool"]
    calls = plan(user)
    if len(results) < len(calls):
        return Script(text=f"Step {len(results) + 1}. ", tool_calls=[calls[len(results)]])
    summary = "; ".join(results)
    words = " ".join(f"w{i}" for i in range(ANSWER_WORDS))
    return Script(text=f"Done ({summary}): {words}.")


async def alive(runs: Runs, *instances: str) -> None:
    """Wait until every named runner holds its lease (it takes runs and sweeps orphans); two child processes
    importing the runner took over 30 s at a load average of 9 on two CPUs."""
    async def answered() -> bool:
        return isinstance(await runs.client.agents(), AgentList)

    async with asyncio.timeout(90):
        await eventually(answered, 90, interval=0.1, what="an agent-runner answering")  # the buckets exist
        registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
        assert await registry.bind()
        for instance in instances:
            watcher = await registry.leases.watch(encode_key(instance))
            try:
                async for entry in watcher:  # type: ignore[attr-defined]
                    if entry is not None and entry.value:
                        break
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]


async def two_runners(runs: Runs, runner: Callable[..., ServiceProcess], **extra: str
                      ) -> dict[str, ServiceProcess]:
    processes = {name: runner(name, **extra) for name in ("a", "b")}
    await alive(runs, *processes)
    return processes


def other(instance: str) -> str:
    return "b" if instance == "a" else "a"


def restart_env(nats_url: str, mock_url: str, prefix: str, tmp_path: Path, instance: str, *,
                agents_toml: str = AGENTS_TOML, agents_file: str = "clerk.toml", **extra: str) -> dict[str, str]:
    """A runner's environment: the clerk agents (or ``agents_toml``), the restart tools logging their calls."""
    agents = tmp_path / agents_file
    agents.write_text(agents_toml)
    env = runner_env(nats_url, mock_url, prefix, tmp_path, INSTANCE_ID=instance, **extra)
    env.update(RAAF_AGENTS_FILE=str(agents), RAAF_TOOLS_MODULE="tests.support.restart_tools",
               RESTART_TOOL_CALLS=str(tmp_path / "calls.log"))
    return env


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


async def until_called(tmp_path: Path, line: str, timeout: float = 10.0) -> None:
    """Wait until a runner process has recorded ``line`` (the tool is running now): another process's file
    has no event to wait on, so it is looked at every 20 ms."""
    for _ in range(int(timeout / 0.02)):
        if line in calls(tmp_path):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {line!r} in {calls(tmp_path)}")


def last_turn_text(events: list[RunEvent]) -> str:
    """The text after the last tool output: the final answer as a client shows it."""
    start = max((i for i, e in enumerate(events) if isinstance(e, ToolOutput)), default=-1) + 1
    return "".join(e.delta for e in events[start:] if isinstance(e, TextDelta))


def dumps(events: list[RunEvent]) -> str:
    return json.dumps([type(e).__name__ for e in events])


async def kill_mid_answer(runs: Runs, runners: dict[str, ServiceProcess], word: str = " w4", *,
                          until: Callable[[RunEvent, str], bool] | None = None) -> str:
    """Whatever client reads the run: wait (on the live events under this prefix) until the first run's text
    says ``word`` (or ``until(event, text so far)`` holds), then SIGKILL the runner that owns the run; the
    run's id."""
    registry = RunRegistry(runs.nc.jetstream(), runs.client.subjects)
    assert await registry.bind()
    sub = await runs.nc.subscribe(runs.client.subjects.run_events_all)
    text: dict[str, str] = {}
    try:
        async for msg in sub.messages:
            event = decode(msg.data)
            if isinstance(event, Unknown):
                continue
            if isinstance(event, TextDelta):
                text[event.run_id] = text.get(event.run_id, "") + event.delta
            said = text.get(event.run_id, "")
            if until(event, said) if until is not None else isinstance(event, TextDelta) and word in said:
                owner = await registry.owner(event.run_id)
                assert owner is not None
                runners.pop(owner).kill()
                return event.run_id
    finally:
        await sub.unsubscribe()
    raise AssertionError("the events subscription ended")
