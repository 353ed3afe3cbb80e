"""Text deltas coalesced while one is being stored (RUN_DELTA_COALESCE, RUN_DELTA_COALESCE_MS), on and off."""

from __future__ import annotations

import pytest

from proto.errors import ErrorCode
from proto.runs import RunAccepted, RunCancelled, RunCompleted, RunEvent, RunFailed, TextDelta
from raaf.testing import OpenAIMock, Script
from tests.support.runs import Runs, StartRunner

TOKENS = 40
TEXT = "".join(f"t{i} " for i in range(TOKENS)).strip()
# A window far longer than the mock needs to send every token: the whole answer lands in a few events.
WIDE = {"RUN_DELTA_COALESCE": "true", "RUN_DELTA_COALESCE_MS": "200"}
MODES = {"coalesced": WIDE, "one-per-token": {"RUN_DELTA_COALESCE": "false"},
         "coalesced-while-storing": {"RUN_DELTA_COALESCE": "true", "RUN_DELTA_COALESCE_MS": "0"}}


def deltas(events: list[RunEvent]) -> list[str]:
    return [e.delta for e in events if isinstance(e, TextDelta)]


def assert_gap_free(events: list[RunEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap-free seq"


async def test_deltas_arriving_within_the_window_are_stored_as_few_events_in_order(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner(**WIDE)
    mock.enqueue(Script(text=TEXT))
    events = await runs.run("tell me")
    assert_gap_free(events)
    assert "".join(deltas(events)) == TEXT and len(deltas(events)) <= 3
    assert isinstance(events[-1], RunCompleted) and events[-1].output == TEXT


async def test_with_coalescing_off_every_model_delta_is_an_event_of_its_own(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner(RUN_DELTA_COALESCE="false")
    mock.enqueue(Script(text=TEXT))
    events = await runs.run("tell me")
    assert_gap_free(events)
    assert len(deltas(events)) == TOKENS and "".join(deltas(events)) == TEXT


@pytest.mark.parametrize("env", MODES.values(), ids=MODES.keys())
async def test_a_run_reads_the_same_from_any_seq_whether_deltas_are_coalesced_or_not(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, env: dict[str, str]
) -> None:
    await start_runner(**env)
    mock.enqueue(Script(text=TEXT, token_delay=0.002))
    events = await runs.run("tell me")
    assert_gap_free(events)
    assert "".join(deltas(events)) == TEXT
    for after in (1, len(events) // 2, len(events) - 1):
        assert await runs.events(events[0].run_id, after_seq=after) == events[after:]


async def test_a_coalesced_delta_is_never_longer_than_the_chunk_size(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner
) -> None:
    await start_runner(**WIDE, STREAMING_CHUNK_SIZE="10")
    mock.enqueue(Script(text=TEXT))
    events = await runs.run("tell me")
    assert_gap_free(events)
    stored = deltas(events)
    assert "".join(stored) == TEXT and max(map(len, stored)) <= 10 and len(stored) < TOKENS


@pytest.mark.parametrize("env", MODES.values(), ids=MODES.keys())
async def test_cancel_mid_stream_ends_with_cancelled_and_no_gap(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, env: dict[str, str]
) -> None:
    await start_runner(**env)
    mock.enqueue(Script(text="word " * 200, token_delay=0.01))
    accepted = await runs.start("long answer")
    assert isinstance(accepted, RunAccepted)
    seen: list[RunEvent] = []
    async for event, _ in runs.client.follow(accepted.run_id):
        seen.append(event)
        if len(deltas(seen)) == 2:
            await runs.client.cancel(accepted.run_id, "user pressed stop")
    await mock.wait_for_disconnect(timeout=5)
    assert isinstance(seen[-1], RunCancelled) and seen[-1].reason == "user pressed stop"
    assert_gap_free(seen)
    assert await runs.events(accepted.run_id) == seen, "the store holds exactly what was followed live"


@pytest.mark.parametrize("env", MODES.values(), ids=MODES.keys())
async def test_text_read_before_a_provider_failure_is_stored_before_the_failure(
    mock: OpenAIMock, runs: Runs, start_runner: StartRunner, env: dict[str, str]
) -> None:
    await start_runner(**env)
    mock.enqueue(Script(text="one two three four", error_after_tokens=2))
    events = await runs.run("hi")
    assert_gap_free(events)
    assert "".join(deltas(events)) == "one two"
    assert isinstance(events[-1], RunFailed) and events[-1].code == ErrorCode.PROVIDER_ERROR
