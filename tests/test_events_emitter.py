"""EventEmitter against a real nats-server: wildcards, once, wait_for_event, failing listeners, limits, names."""

from __future__ import annotations

import asyncio
import builtins
import logging

import nats
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from proto.errors import ErrorCode
from raaf import (
    EmitBacklogError,
    Event,
    EventEmitter,
    EventTimeoutError,
    EventTooLargeError,
    InvalidEventDataError,
    InvalidEventNameError,
    ListenerLimitError,
    StreamingError,
)
from raaf import errors as raaf_errors
from shared.devstack.servers import NatsServer
from tests.support.env import unique_prefix
from tests.support.events import delete_events_stream, emitters, event_settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("delivery_path")  # every test on both delivery paths


async def test_wildcards_match_as_the_seed_describes(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        seen: dict[str, list[str]] = {p: [] for p in ("user.*", "user.**", "user.>", "user.login", "*.login", "**")}
        for pattern, names in seen.items():
            await emitter.on(pattern, lambda event, names=names: names.append(event.event))
        for name in ("user.login", "user.profile.update", "admin.login", "user"):
            await emitter.emit(name, {"n": 1})
        await eventually(lambda: len(seen["**"]) == 4)
        await asyncio.sleep(0.05)  # time for a wrong delivery to the narrower patterns to show
        assert seen["user.*"] == ["user.login"]  # one token only
        assert seen["user.**"] == ["user.login", "user.profile.update"]  # the tail: one token or more
        assert seen["user.>"] == seen["user.**"]
        assert seen["user.login"] == ["user.login"]
        assert seen["*.login"] == ["user.login", "admin.login"]
        assert seen["**"] == ["user.login", "user.profile.update", "admin.login", "user"]


async def test_listener_gets_the_envelope_with_data_id_timestamp_and_source(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(source="billing")
        got: list[Event] = []
        await emitter.on("agent.response", got.append)
        sent = await emitter.emit("agent.response", {"content": "hi", "tokens": [1, 2]})
        await eventually(lambda: len(got) == 1)
        assert got[0] == sent
        assert (got[0].event, got[0].data, got[0].source) == ("agent.response", {"content": "hi", "tokens": [1, 2]},
                                                              "billing")
        assert got[0].id and got[0].timestamp > 0


async def test_once_fires_once_for_sync_and_async_callbacks(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        sync_calls: list[str] = []
        async_calls: list[str] = []

        async def slow(event: Event) -> None:
            await asyncio.sleep(0.05)  # events keep arriving while it runs
            async_calls.append(event.id)

        await emitter.once("system.startup", lambda event: sync_calls.append(event.id))
        await emitter.once("system.*", slow)
        assert emitter.listener_count() == 2
        first = await emitter.emit("system.startup")
        for _ in range(4):
            await emitter.emit("system.startup")
        await eventually(lambda: len(async_calls) == 1)
        await asyncio.sleep(0.1)  # time for a second call, which must not come
        assert sync_calls == [first.id] and async_calls == [first.id]
        assert emitter.listener_count() == 0


async def test_off_removes_a_listener_and_reports_unknown_ids(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        kept: list[str] = []
        removed: list[str] = []
        await emitter.on("a.b", lambda e: kept.append(e.id))
        listener_id = await emitter.on("a.b", lambda e: removed.append(e.id))
        assert await emitter.off(listener_id) is True
        assert await emitter.off(listener_id) is False
        assert await emitter.off("no-such-listener") is False
        await emitter.emit("a.b")
        await eventually(lambda: len(kept) == 1)
        assert removed == []


async def test_wait_for_event_returns_the_next_matching_event(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        waiter = asyncio.create_task(emitter.wait_for_event("user.*", timeout=5))
        await eventually(lambda: emitter.listener_count("user.*") == 1)
        await emitter.emit("admin.login")
        sent = await emitter.emit("user.login", {"user_id": "u1"})
        assert await waiter == sent
        assert emitter.listener_count() == 0


async def test_wait_for_event_times_out_with_a_typed_error(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_WAIT_TIMEOUT="0.2") as make:
        emitter = await make()
        with pytest.raises(EventTimeoutError) as caught:
            await emitter.wait_for_event("never.happens")  # the default timeout comes from EVENTS_WAIT_TIMEOUT
        error = caught.value
        assert isinstance(error, raaf_errors.TimeoutError) and isinstance(error, builtins.TimeoutError)
        assert isinstance(error, StreamingError) and error.code is ErrorCode.TIMEOUT
        assert (error.pattern, error.timeout) == ("never.happens", 0.2)
        assert error.details == {"pattern": "never.happens", "timeout": 0.2}
        with pytest.raises(EventTimeoutError):
            await emitter.wait_for_event("never.happens", timeout=0.05)
        assert emitter.listener_count() == 0  # the waiting listener is gone


async def test_an_event_published_with_plain_nats_reaches_a_listener(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        got: list[Event] = []
        await emitter.on("user.*", got.append)
        prefix = emitter.settings.runtime.prefix
        nc = await nats.connect(nats_server.url)  # what `nats pub <prefix>.events.user.login '{...}'` does
        try:
            await nc.publish(f"{prefix}.events.user.login", b'{"user_id":"u1"}')
            await nc.publish(f"{prefix}.events.user.note", b"plain text, not JSON")
            await nc.publish(f"{prefix}.events.user.empty", b"")
            # An envelope that claims another name: the subject decides what the event is.
            await nc.publish(f"{prefix}.events.user.spoof",
                             b'{"type":"event","event":"admin.secret","id":"x1","timestamp":1.5,"data":1}')
            await nc.flush()
        finally:
            await nc.close()
        await eventually(lambda: len(got) == 4)
        by_name = {event.event: event for event in got}
        assert by_name["user.login"].data == {"user_id": "u1"}
        assert by_name["user.login"].source is None and by_name["user.login"].id
        assert by_name["user.note"].data == "plain text, not JSON"
        assert by_name["user.empty"].data is None
        assert (by_name["user.spoof"].data, by_name["user.spoof"].id) == (1, "x1")
        assert "admin.secret" not in by_name


async def test_a_failing_listener_does_not_stop_the_others(nats_server: NatsServer,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    async with emitters(nats_server.url) as make:
        emitter = await make(registry=registry)
        before: list[int] = []
        after: list[int] = []
        await emitter.on("job.*", lambda e: before.append(e.data))

        def broken(event: Event) -> None:
            raise RuntimeError("listener bug")

        async def broken_async(event: Event) -> None:
            raise ValueError("async listener bug")

        bad_id = await emitter.on("job.*", broken)
        await emitter.on("job.done", broken_async)
        await emitter.on("job.*", lambda e: after.append(e.data))
        with caplog.at_level(logging.ERROR, logger="raaf.events"):
            for n in range(3):
                await emitter.emit("job.done", n)
            await eventually(lambda: len(after) == 3)
        assert before == after == [0, 1, 2]
        assert emitter.stats()["listener_errors"] == 6
        assert emitter.stats()["delivered"] == 6
        records = [r.__dict__ for r in caplog.records if r.getMessage() == "event listener raised"]
        assert any(r["listener_id"] == bad_id and r["event"] == "job.done" and r["pattern"] == "job.*"
                   for r in records)
        assert len(records) == 2  # each failing listener logs once a second at most, not once per event
        exposition = generate_latest(registry).decode()
        assert "raaf_event_listener_errors_total 6.0" in exposition


async def test_max_listeners_is_enforced_per_pattern_with_a_clear_error(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_MAX_PATTERNS="3") as make:
        emitter = await make(max_listeners=2)
        first = await emitter.on("a.*", print)
        await emitter.on("a.*", print)
        with pytest.raises(ListenerLimitError) as caught:
            await emitter.on("a.*", print)
        assert caught.value.code is ErrorCode.LIMIT_EXCEEDED and caught.value.limit == 2
        assert "a.*" in str(caught.value)
        await emitter.once("b", print)  # another pattern has its own budget
        await emitter.off(first)
        await emitter.on("a.*", print)
        await emitter.on("c", print)
        with pytest.raises(ListenerLimitError):
            await emitter.on("d", print)  # EVENTS_MAX_PATTERNS distinct patterns


@pytest.mark.parametrize("name", ["user.*", "user.>", "a..b", "", "a b", ".a", "a.", "naïve", "x" * 201])
async def test_invalid_event_names_get_a_typed_error(nats_server: NatsServer, name: str) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        with pytest.raises(InvalidEventNameError) as caught:
            await emitter.emit(name, {})
        assert caught.value.code is ErrorCode.INVALID_NAME and caught.value.name == name
        assert emitter.stats()["emitted"] == 0


@pytest.mark.parametrize("pattern", ["user.>.x", "user.**.x", "a..b", "us*r", "user.lo gin", ""])
async def test_invalid_patterns_get_a_typed_error(nats_server: NatsServer, pattern: str) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        with pytest.raises(InvalidEventNameError):
            await emitter.on(pattern, print)


async def test_wildcards_can_be_switched_off(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(enable_wildcards=False)
        for pattern in ("user.*", "user.**", "user.>"):
            with pytest.raises(InvalidEventNameError, match="wildcards are disabled"):
                await emitter.on(pattern, print)
        await emitter.on("user.login", print)


async def test_unencodable_and_oversized_data_get_typed_errors(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_MAX_EVENT_SIZE="1024") as make:
        emitter = await make()
        with pytest.raises(InvalidEventDataError) as bad:
            await emitter.emit("a.b", {"when": object()})
        assert bad.value.code is ErrorCode.BAD_REQUEST
        with pytest.raises(EventTooLargeError) as big:
            await emitter.emit("a.b", "x" * 2000)
        assert big.value.code is ErrorCode.TOO_LARGE and big.value.limit == 1024 and big.value.size > 2000
        await emitter.emit("a.b", "x" * 500)  # under the limit is fine
        assert emitter.stats()["emit_failures"] == 2


async def test_filter_and_map_derive_emitters(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        high = emitter.filter(lambda e: e.data["priority"] == "high")
        shouted = high.map(lambda e: Event(event=e.event, data={k.upper(): v for k, v in e.data.items()}, id=e.id,
                                           timestamp=e.timestamp))
        all_seen: list[object] = []
        high_seen: list[object] = []
        shouted_seen: list[object] = []
        await emitter.on("task.*", lambda e: all_seen.append(e.data))
        await high.on("task.*", lambda e: high_seen.append(e.data))
        await shouted.on("task.*", lambda e: shouted_seen.append(e.data))
        waiter = asyncio.create_task(shouted.wait_for_event("task.*", timeout=5))
        await eventually(lambda: emitter.listener_count("task.*") == 4)
        await emitter.emit("task.new", {"priority": "low"})
        await high.emit("task.new", {"priority": "high"})  # a derived emitter emits through its parent
        await eventually(lambda: len(all_seen) == 2 and len(shouted_seen) == 1)
        assert high_seen == [{"priority": "high"}]
        assert shouted_seen == [{"PRIORITY": "high"}]
        assert (await waiter).data == {"PRIORITY": "high"}
        await high.close()  # a derived emitter does not own the connection
        await emitter.emit("task.new", {"priority": "high"})
        await eventually(lambda: len(high_seen) == 2)


async def test_a_failing_filter_counts_as_a_listener_error(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        picky = emitter.filter(lambda e: e.data["missing"])
        ok: list[object] = []
        await picky.on("x", ok.append)
        await emitter.on("x", ok.append)
        await emitter.emit("x", {})
        await eventually(lambda: len(ok) == 1)
        assert emitter.stats()["listener_errors"] == 1


async def test_emit_async_returns_an_awaitable_and_bounds_what_is_in_flight(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_MAX_PENDING_EMITS="3") as make:
        emitter = await make(enable_history=False)
        got: list[object] = []
        await emitter.on("bulk.*", lambda e: got.append(e.data))
        tasks = [emitter.emit_async("bulk.item", n) for n in range(3)]
        with pytest.raises(EmitBacklogError) as caught:
            emitter.emit_async("bulk.item", 99)
        assert caught.value.code is ErrorCode.OVERLOADED
        sent = await asyncio.gather(*tasks)
        assert [event.data for event in sent] == [0, 1, 2]
        await eventually(lambda: got == [0, 1, 2])
        with pytest.raises(InvalidEventNameError):
            await emitter.emit_async("bad name", 1)


async def test_close_finishes_emits_in_flight_then_refuses_work(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    listener = EventEmitter(settings=event_settings(nats_server.url, prefix), registry=CollectorRegistry())
    emitter = EventEmitter(settings=event_settings(nats_server.url, prefix), registry=CollectorRegistry())
    try:
        await close_finishes_emits_in_flight(listener, emitter)
    finally:
        await delete_events_stream(nats_server.url, prefix)


async def close_finishes_emits_in_flight(listener: EventEmitter, emitter: EventEmitter) -> None:
    async with listener:
        got: list[object] = []
        await listener.on("drain.*", lambda e: got.append(e.data))
        await emitter.connect()
        tasks = [emitter.emit_async("drain.item", n) for n in range(50)]
        await emitter.close()
        assert all(task.done() and task.exception() is None for task in tasks)
        await eventually(lambda: len(got) == 50)
        with pytest.raises(raaf_errors.ConnectionError):
            await emitter.emit("drain.item", 1)
        with pytest.raises(raaf_errors.ConnectionError):
            await emitter.on("drain.*", print)
    assert not listener.connected


async def test_emit_before_connect_is_a_typed_error() -> None:
    emitter = EventEmitter(settings=event_settings("nats://127.0.0.1:1", unique_prefix()),
                           registry=CollectorRegistry())
    with pytest.raises(raaf_errors.ConnectionError) as caught:
        await emitter.emit("a.b")
    assert caught.value.code is ErrorCode.CONNECTION_ERROR


async def test_connect_to_an_unreachable_server_fails_within_the_timeout() -> None:
    emitter = EventEmitter(settings=event_settings("nats://127.0.0.1:1", unique_prefix(),
                                                   EVENTS_CONNECT_TIMEOUT="0.5"), registry=CollectorRegistry())
    with pytest.raises(raaf_errors.ConnectionError, match="not reachable"):
        await emitter.connect()


async def test_a_slow_listener_drops_past_its_buffer_and_the_drops_are_counted(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_PENDING_LIMIT="10") as make:
        emitter = await make(enable_history=False)
        release = asyncio.Event()
        handled: list[object] = []

        async def stuck(event: Event) -> None:
            await release.wait()
            handled.append(event.data)

        await emitter.on("flood.*", stuck)
        for n in range(200):
            await emitter.emit("flood.x", n)
        await eventually(lambda: emitter.stats()["dropped"] > 0)
        release.set()
        await eventually(lambda: len(handled) + emitter.stats()["dropped"] == 200)
        assert 10 <= len(handled) < 200
        # The emitter still works afterwards.
        await emitter.emit("flood.x", "after")
        await eventually(lambda: handled[-1] == "after")


async def test_close_does_not_hang_on_a_stuck_listener(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, SHUTDOWN_TIMEOUT="0.3") as make:
        emitter = await make(enable_history=False)
        started = asyncio.Event()

        async def stuck(event: Event) -> None:
            started.set()
            await asyncio.sleep(3600)

        await emitter.on("hang.*", stuck)
        await emitter.emit("hang.now")
        await asyncio.wait_for(started.wait(), 5)
        await asyncio.wait_for(emitter.close(), 3)
        assert not emitter.connected


async def test_bad_data_on_a_name_already_emitted_gets_the_same_typed_errors(nats_server: NatsServer) -> None:
    # The second emit of a name takes emit's written-out fast path (subject cached): same checks as the first.
    async with emitters(nats_server.url, EVENTS_MAX_EVENT_SIZE="1024") as make:
        emitter = await make()
        seen: list[Event] = []
        await emitter.on("a.*", seen.append)
        first = await emitter.emit("a.b", {"n": 1})
        with pytest.raises(InvalidEventDataError):
            await emitter.emit("a.b", {"when": object()})
        with pytest.raises(EventTooLargeError):
            await emitter.emit("a.b", "x" * 2000)
        second = await emitter.emit("a.b", {"n": 2})
        assert second.id != first.id and second.source == first.source and second.timestamp >= first.timestamp
        assert emitter.stats()["emit_failures"] == 2
        await eventually(lambda: len(seen) == 2, 1, what="both emitted events delivered")
        assert [event.data for event in seen] == [{"n": 1}, {"n": 2}]
