"""How listeners get their events, on both paths (direct from the reader, and nats-py's queue): order, async
listeners, bounds on a slow pattern, close, and the switches."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
import pytest
from prometheus_client import CollectorRegistry

from raaf import Event, EventEmitter
from shared.devstack.servers import NatsServer
from shared.events.settings import EventSettings
from tests.support.env import unique_prefix
from tests.support.events import emitters, event_settings
from tests.support.nats_shapes import connect_reshaped
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("delivery_path")


async def test_a_pattern_delivers_in_order_and_awaits_async_listeners_before_the_next_event(
        nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(enable_history=False)
        log: list[tuple[str, int]] = []

        async def slow(event: Event) -> None:
            log.append(("async-start", event.data))
            await asyncio.sleep(0.002 if event.data % 7 == 0 else 0)
            log.append(("async-end", event.data))

        async def later(event: Event) -> None:
            log.append(("returned-awaitable", event.data))

        await emitter.on("seq.*", lambda e: log.append(("sync", e.data)))
        await emitter.on("seq.*", slow)
        await emitter.on("seq.*", lambda e: later(e))  # a plain function that returns a coroutine
        await emitter.on("seq.*", lambda e: log.append(("last", e.data)))
        for n in range(60):
            await emitter.emit("seq.step", n)
        await eventually(lambda: len(log) == 60 * 5)
        steps = ("sync", "async-start", "async-end", "returned-awaitable", "last")
        assert log == [(step, n) for n in range(60) for step in steps]
        assert emitter.stats()["delivered"] == 60 * 4 and emitter.stats()["dropped"] == 0


async def test_a_stuck_async_listener_buffers_within_its_limit_and_does_not_hold_up_other_patterns(
        nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_PENDING_LIMIT="10") as make:
        emitter = await make(enable_history=False)
        release = asyncio.Event()
        stuck_handled: list[int] = []
        other: list[int] = []

        async def stuck(event: Event) -> None:
            await release.wait()
            stuck_handled.append(event.data)

        await emitter.on("stuck.*", stuck)
        await emitter.on("free.*", lambda e: other.append(e.data))
        for n in range(100):
            await emitter.emit("stuck.x", n)
            await emitter.emit("free.x", n)
            if n % 5 == 4:
                await asyncio.sleep(0.01)  # nats-py's path buffers up to 10 for the fast pattern too
        await eventually(lambda: len(other) == 100)  # delivered while the other pattern is stuck
        assert stuck_handled == [] and emitter.stats()["dropped"] > 0
        release.set()
        await eventually(lambda: len(stuck_handled) + emitter.stats()["dropped"] == 100)
        assert 10 <= len(stuck_handled) <= 12  # the one in progress and the buffered ones; the rest dropped
        assert stuck_handled == sorted(stuck_handled) and stuck_handled[0] == 0


async def test_the_pending_bytes_limit_bounds_a_slow_pattern(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_PENDING_BYTES_LIMIT="4096") as make:
        emitter = await make(enable_history=False)
        release = asyncio.Event()
        handled: list[int] = []

        async def stuck(event: Event) -> None:
            await release.wait()
            handled.append(event.data["n"])

        await emitter.on("big.*", stuck)
        for n in range(50):
            await emitter.emit("big.x", {"n": n, "pad": "x" * 1000})
        await eventually(lambda: emitter.stats()["dropped"] > 0)
        release.set()
        await eventually(lambda: len(handled) + emitter.stats()["dropped"] == 50)
        assert 1 <= len(handled) <= 6  # about 4 KiB of ~1.1 KiB events waited; everything else was dropped
        await emitter.emit("big.x", {"n": 99})
        await eventually(lambda: handled[-1] == 99)


async def test_close_lets_async_listeners_finish_what_already_arrived(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(enable_history=False)
        handled: list[int] = []

        async def slowish(event: Event) -> None:
            await asyncio.sleep(0.005)
            handled.append(event.data)

        await emitter.on("work.*", slowish)
        for n in range(20):
            await emitter.emit("work.item", n)
        await eventually(lambda: emitter.stats()["received"] == 20)
        await emitter.close()
        assert handled == list(range(20))


async def test_off_of_the_last_listener_during_a_backlog_ends_the_pattern_cleanly(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(enable_history=False)
        handled: list[int] = []

        async def slowish(event: Event) -> None:
            await asyncio.sleep(0.002)
            handled.append(event.data)

        listener_id = await emitter.on("tail.*", slowish)
        for n in range(30):
            await emitter.emit("tail.x", n)
        await eventually(lambda: len(handled) >= 1)
        assert await emitter.off(listener_id)
        count = len(handled)
        await asyncio.sleep(0.1)  # time for the backlog to run on, which it must not
        assert len(handled) <= count + 1  # at most the call in progress finishes
        assert emitter.listener_count() == 0 and emitter.stats()["patterns"] == 0
        again: list[int] = []
        await emitter.on("tail.*", lambda e: again.append(e.data))
        await emitter.emit("tail.x", "new")
        await eventually(lambda: again == ["new"])


async def test_direct_delivery_and_the_lean_publish_follow_their_settings(nats_server: NatsServer,
                                                                          delivery_path: str) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        expected = delivery_path == "direct"
        stats = emitter.stats()
        assert (stats["direct_delivery"], stats["lean_publish"]) == (expected, expected)
        # The constructor's flags win over the environment.
        overridden = await make(direct_delivery=not expected, lean_publish=not expected)
        stats = overridden.stats()
        assert (stats["direct_delivery"], stats["lean_publish"]) == (not expected, not expected)
        got: list[Event] = []
        await overridden.on("flag.*", got.append)
        sent = await overridden.emit("flag.x", {"ok": True})
        await eventually(lambda: got == [sent])


def test_the_delivery_switches_and_bytes_limit_are_events_variables() -> None:
    settings = EventSettings.from_env({"EVENTS_DIRECT_DELIVERY": "false", "EVENTS_LEAN_PUBLISH": "no",
                                       "EVENTS_PENDING_BYTES_LIMIT": "65536"})
    assert (settings.direct_delivery, settings.lean_publish, settings.pending_bytes_limit) == (False, False, 65536)
    defaults = EventSettings.from_env({})
    assert (defaults.direct_delivery, defaults.lean_publish, defaults.pending_bytes_limit) == (True, True, 128 << 20)


async def test_on_a_client_of_another_shape_events_take_nats_pys_paths_with_a_warning(
        nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    nc = await connect_reshaped(nats_server.url)
    emitter = EventEmitter(settings=event_settings(nats_server.url, unique_prefix()), nc=nc, enable_history=False,
                           registry=CollectorRegistry(), direct_delivery=True, lean_publish=True)
    try:
        with caplog.at_level(logging.WARNING, logger="raaf.nats"):
            await emitter.connect()
        assert any("'direct' is off" in r.getMessage() for r in caplog.records)
        stats = emitter.stats()
        assert (stats["direct_delivery"], stats["lean_publish"]) == (False, False)
        got: list[Event] = []
        await emitter.on("reshaped.*", got.append)
        sent = [await emitter.emit("reshaped.x", n) for n in range(20)]
        await eventually(lambda: got == sent)
    finally:
        await emitter.close()
        await nc.close()


async def test_direct_delivery_counts_drops_on_a_shared_connection_too(nats_server: NatsServer,
                                                                      delivery_path: str) -> None:
    if delivery_path != "direct":
        pytest.skip("nats-py reports a slow consumer to the connection's owner only")
    nc = await nats.connect(nats_server.url)
    emitter = EventEmitter(settings=event_settings(nats_server.url, unique_prefix(), EVENTS_PENDING_LIMIT="5"),
                           nc=nc, enable_history=False, registry=CollectorRegistry())
    try:
        await emitter.connect()
        release = asyncio.Event()
        handled: list[Any] = []

        async def stuck(event: Event) -> None:
            await release.wait()
            handled.append(event.data)

        await emitter.on("shared.*", stuck)
        for n in range(40):
            await emitter.emit("shared.x", n)
        await eventually(lambda: emitter.stats()["received"] == 40)
        release.set()
        await eventually(lambda: len(handled) + emitter.stats()["dropped"] == 40)
        assert emitter.stats()["dropped"] == 40 - 6 and handled == list(range(6))
    finally:
        await emitter.close()
        await nc.close()
