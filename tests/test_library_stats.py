"""EventEmitters and MessageQueues in users' processes are counted in ``raaf.stats()``, and stop being on close."""

from __future__ import annotations

from typing import Any

import nats

import raaf
from proto.events import Event
from raaf.jobs import MessageQueue
from shared.devstack.servers import NatsServer, ValkeyServer
from tests.support.env import unique_prefix
from tests.support.events import emitters
from tests.support.waiting import eventually

NO_HISTORY = {"EVENTS_ENABLE_HISTORY": "false"}


async def test_two_emitters_add_up_in_the_event_emitter_section(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, **NO_HISTORY) as make:
        first, second = await make(), await make()
        prefix = first.settings.runtime.prefix
        seen: list[Event] = []
        await first.on("order.*", seen.append)
        await second.on("order.*", seen.append)
        for n in range(3):
            await first.emit("order.created", {"n": n})
        for n in range(2):
            await second.emit("order.paid", {"n": n})
        await eventually(lambda: len(seen) == 10)
        nc = await nats.connect(nats_server.url)
        try:
            stats = await raaf.stats(nc=nc, prefix=prefix, gather_timeout=1.0)
        finally:
            await nc.close()
    assert stats.services == {"event-emitter": 2}
    section = stats.event_emitter
    assert (section.listeners, section.emitted, section.delivered, section.errors) == (2, 5, 10, 0)


async def test_listener_errors_are_counted_as_errors(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, **NO_HISTORY) as make:
        emitter = await make()

        def broken(event: Event) -> None:
            raise RuntimeError("listener bug")

        await emitter.on("job.*", broken)
        await emitter.emit("job.done")
        await eventually(lambda: emitter.stats()["listener_errors"] == 1)
        nc = await nats.connect(nats_server.url)
        try:
            stats = await raaf.stats(nc=nc, prefix=emitter.settings.runtime.prefix, gather_timeout=1.0)
        finally:
            await nc.close()
    assert (stats.event_emitter.emitted, stats.event_emitter.delivered, stats.event_emitter.errors) == (1, 0, 1)


async def test_a_closed_or_opted_out_emitter_is_not_counted(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, **NO_HISTORY) as make:
        counted, closing = await make(), await make()
        await make(report_stats=False)
        await counted.emit("a.b")
        await closing.close()
        nc = await nats.connect(nats_server.url)
        try:
            stats = await raaf.stats(nc=nc, prefix=counted.settings.runtime.prefix, gather_timeout=1.0)
        finally:
            await nc.close()
    assert stats.services == {"event-emitter": 1}
    assert stats.event_emitter.emitted == 1


async def test_a_message_queue_reports_its_figures_until_closed(nats_server: NatsServer,
                                                                redis_server: ValkeyServer) -> None:
    prefix = unique_prefix()
    nc = await nats.connect(nats_server.url)
    queue = MessageQueue(redis_server.url, prefix=prefix, name="orders", batch_size=3, block=0.05, nc=nc)
    try:
        await queue.push_many([{"n": n} for n in range(5)])
        await queue.start()
        handled: list[Any] = []
        assert await queue.process_batch(handled.extend) == 3
        stats = await raaf.stats(nc=nc, prefix=prefix, gather_timeout=1.0)
        assert stats.services == {"message-queue": 1}
        section = stats.message_queue
        assert (section.queues, section.pending, section.processed, section.batches) == (1, 2, 3, 1)
        await queue.close()
        stats = await raaf.stats(nc=nc, prefix=prefix, gather_timeout=1.0)
        assert stats.services == {}
        assert stats.message_queue.processed == 0
    finally:
        await queue.close()
        await nc.close()


async def test_a_queue_without_nats_or_opted_out_does_not_answer(nats_server: NatsServer,
                                                                 redis_server: ValkeyServer) -> None:
    prefix = unique_prefix()
    nc = await nats.connect(nats_server.url)
    plain = MessageQueue(redis_server.url, prefix=prefix)
    opted_out = MessageQueue(redis_server.url, prefix=prefix, nc=nc, report_stats=False)
    try:
        await plain.start()
        await opted_out.start()
        stats = await raaf.stats(nc=nc, prefix=prefix, gather_timeout=1.0)
        assert stats.services == {}
    finally:
        await plain.close()
        await opted_out.close()
        await nc.close()
