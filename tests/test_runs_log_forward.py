"""Forward compatibility of the run log: an event of a type this version does not know (a newer writer's) is
skipped by typed readers and forwarded as stored by the gateway's pass-through streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest

import raaf
from proto.errors import ErrorCode
from proto.runs import RunCompleted, RunStarted, TextDelta, runs_encoder
from proto.subjects import Subjects
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.runs.log import RunLog, Unknown, decode, run_stream_config
from shared.service.app import App
from tests.support.env import service_env
from tests.support.gateway import connect
from tests.support.runs import Runs
from tests.support.sse import SseEvent, sse_events


def future_event(run_id: str, seq: int) -> bytes:
    """An event a later version may write: a type this one has no Struct for, with fields of its own."""
    return json.dumps({"type": "run_tool_approval_pondered", "run_id": run_id, "seq": seq, "at": time.time(),
                       "call_id": "call_1", "verdict": {"nested": True}}).encode()


@pytest.fixture
async def log(runs: Runs, prefix: str) -> RunLog:
    js = runs.nc.jetstream()
    await js.add_stream(run_stream_config(Subjects(prefix), max_age=600))
    return RunLog(runs.nc, js, Subjects(prefix))


@pytest.fixture
async def gateway(nats_server: NatsServer, prefix: str, start_app: Callable[[App], Awaitable[App]]) -> str:
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5")
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    assert isinstance(app, GatewayApp)
    return app.http_url


async def write(log: RunLog, run_id: str, seq: int, payload: bytes) -> None:
    assert await log.publish(run_id, seq, payload)


def started(run_id: str) -> bytes:
    return runs_encoder.encode(RunStarted(run_id=run_id, seq=1, at=time.time(), agent="assistant", model="m",
                                          instance="elsewhere"))


def delta(run_id: str, seq: int, text: str) -> bytes:
    return runs_encoder.encode(TextDelta(run_id=run_id, seq=seq, at=time.time(), agent="assistant", delta=text))


def completed(run_id: str, seq: int) -> bytes:
    return runs_encoder.encode(RunCompleted(run_id=run_id, seq=seq, at=time.time(), agent="assistant",
                                            output="Hello world"))


def test_an_unknown_event_type_decodes_as_unknown_and_a_broken_known_one_still_raises() -> None:
    unknown = decode(future_event("r1", 7))
    assert unknown == Unknown(seq=7, type="run_tool_approval_pondered")
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"type": "run_text_delta", "run_id": "r1", "seq": 2, "at": 0}')  # no agent, no delta
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"type": "run_from_the_future", "run_id": "r1", "at": 0}')  # not even a seq


def gaps_a_playground_would_see(seqs: list[int]) -> int:
    """How often the playground's check (``onRunEvent``) finds a gap and would ask again: a seq past last + 1."""
    last, gaps = 0, 0
    for seq in seqs:
        if seq <= last:
            continue  # already shown
        if seq != last + 1:
            gaps += 1
            continue
        last = seq
    return gaps


async def test_an_event_of_an_unknown_type_reaches_ws_and_sse_followers_as_stored_and_the_python_runner_skips_it(
    log: RunLog, gateway: str, nats_server: NatsServer, prefix: str
) -> None:
    run_id = uuid.uuid4().hex
    stored = [started(run_id), delta(run_id, 2, "Hello "), future_event(run_id, 3), delta(run_id, 4, "world"),
              completed(run_id, 5)]
    await write(log, run_id, 1, stored[0])
    await write(log, run_id, 2, stored[1])
    sse_seen = asyncio.Queue[int]()
    ws_seen = asyncio.Queue[int]()
    runner_seen = asyncio.Queue[int]()

    async def over_sse(http: aiohttp.ClientSession) -> list[SseEvent]:
        async with http.get(f"{gateway}/v1/runs/{run_id}/events") as resp:
            assert resp.status == 200
            events = []
            async for event in sse_events(resp):
                events.append(event)
                sse_seen.put_nowait(event.json()["seq"])
            return events

    async def over_ws(http: aiohttp.ClientSession) -> list[bytes]:
        ws, _ = await connect(http, f"{gateway.replace('http://', 'ws://')}/ws")
        try:
            await ws.send_json({"type": "resume", "run_id": run_id, "last_seq": 0})
            frames = []
            while True:
                msg = await ws.receive(timeout=30)
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                frames.append(msg.data.encode())
                event = json.loads(msg.data)
                ws_seen.put_nowait(event["seq"])
                if event["type"] == "run_completed":
                    return frames
        finally:
            await ws.close()

    async def over_runner() -> list[str]:
        async with raaf.Runner("assistant", nats_url=nats_server.url, prefix=prefix) as runner:
            types = []
            async for event in runner.events(run_id):
                types.append(str(type(event).__struct_config__.tag))
                runner_seen.put_nowait(event.seq)
            return types

    async with asyncio.timeout(30), aiohttp.ClientSession() as http:
        followers = asyncio.gather(over_sse(http), over_ws(http), over_runner())
        for seen in (sse_seen, ws_seen, runner_seen):  # all read the stored start; the rest comes to them live
            assert [await seen.get(), await seen.get()] == [1, 2]
        for seq in (3, 4, 5):
            await write(log, run_id, seq, stored[seq - 1])
        sse, ws_frames, runner_types = await followers

    # The pass-through followers forward every event as stored, the unknown one included, in seq order.
    assert [e.id for e in sse] == ["1", "2", "3", "4", "5"]
    assert [e.event for e in sse] == ["run_started", "run_text_delta", "run_tool_approval_pondered",
                                      "run_text_delta", "run_completed"]
    assert [e.data for e in sse] == stored, "each event's JSON exactly as stored"
    assert ws_frames == stored, "each frame the stored bytes, unchanged"
    for seen in (sse_seen, ws_seen):
        assert [seen.get_nowait() for _ in range(seen.qsize())] == [3, 4, 5]
    assert gaps_a_playground_would_see([e.json()["seq"] for e in sse]) == 0
    assert gaps_a_playground_would_see([json.loads(f)["seq"] for f in ws_frames]) == 0
    # The Python runner renders typed events: it skips the one it has no type for, keeping the order.
    assert runner_types == ["run_started", "run_text_delta", "run_text_delta", "run_completed"]
    assert [runner_seen.get_nowait() for _ in range(runner_seen.qsize())] == [4, 5], "seq 3 skipped, nothing else"

    # A follower that comes later reads it all from the store: the typed reader skips and counts the unknown
    # event; SSE and a /ws resume from before it forward it as stored.
    async with contextlib.aclosing(log.stored(run_id)) as typed:
        assert [event.seq async for event, _ in typed] == [1, 2, 4, 5]
    assert log.unknown_events == 1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.get(f"{gateway}/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1"}) as resp:
            assert [e.data async for e in sse_events(resp)] == stored[1:]
        ws, _ = await connect(http, f"{gateway.replace('http://', 'ws://')}/ws")
        try:
            await ws.send_json({"type": "resume", "run_id": run_id, "last_seq": 2})
            assert [(await ws.receive(timeout=10)).data.encode() for _ in range(3)] == stored[2:]
        finally:
            await ws.close()


async def test_a_run_whose_newest_event_is_of_an_unknown_type_still_reads_and_ends(log: RunLog) -> None:
    run_id = uuid.uuid4().hex
    await write(log, run_id, 1, started(run_id))
    await write(log, run_id, 2, future_event(run_id, 2))
    last = await log.last(run_id)
    assert isinstance(last, RunStarted), "the newest event this version knows"
    failed = await log.fail(run_id, ErrorCode.UNAVAILABLE, "gone")
    assert failed is not None and failed.seq == 3, "the next seq after the unknown one"
