"""MessageQueue on a real Valkey: batches, acknowledged only after the callback returns, redelivered otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from raaf.jobs import MessageQueue, PayloadTooLargeError, QueueFullError
from shared.devstack.redis_ha import ValkeyCluster
from shared.devstack.servers import ValkeyServer
from tests.support.env import unique_prefix
from tests.support.waiting import eventually

MakeQueue = Callable[..., MessageQueue]


# Each test runs on one server and on a three-primary cluster (the queue's keys share its hash tag).
@pytest.fixture(params=["redis_server", "valkey_cluster"])
async def make_queue(request: pytest.FixtureRequest) -> AsyncIterator[MakeQueue]:
    server: ValkeyServer | ValkeyCluster = request.getfixturevalue(request.param)
    prefix = unique_prefix()
    made: list[MessageQueue] = []

    def make(**kw: Any) -> MessageQueue:
        queue = MessageQueue(server.url, prefix=prefix, **{"block": 0.05, **kw})
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


async def test_messages_arrive_in_batches_and_are_acknowledged_after_the_callback(make_queue: MakeQueue) -> None:
    queue = make_queue(batch_size=100)
    await queue.push_many([{"n": n} for n in range(120)])
    sizes: list[int] = []
    pending_during: list[int] = []

    async def handle(messages: list[Any]) -> None:
        sizes.append(len(messages))
        pending_during.append((await queue.stats())["pending"])
        if sum(sizes) >= 120:
            queue.stop()

    await asyncio.wait_for(queue.process_messages(handle, batch_size=50), 5)
    assert sizes == [50, 50, 20]
    assert pending_during == [50, 50, 20], "a batch stays pending while its callback runs"
    stats = await queue.stats()
    assert (stats["length"], stats["pending"], stats["processed"]) == (0, 0, 120)


async def test_a_failed_batch_is_delivered_again_and_dead_after_too_many_tries(make_queue: MakeQueue) -> None:
    queue = make_queue(batch_size=10, visibility_timeout=0.2, max_deliveries=2)
    await queue.push_many(["poison", "fine"])
    deliveries: list[list[Any]] = []

    def handle(messages: list[Any]) -> None:
        deliveries.append(messages)
        raise ValueError("cannot store these")

    async def until_dead() -> bool:
        await queue.process_batch(handle)
        return bool(await queue.dead_messages())

    await eventually(until_dead, 5, what="messages buried")
    assert deliveries[0] == ["poison", "fine"] and len(deliveries) == 2
    assert await queue.dead_messages() == ["poison", "fine"]
    assert (await queue.stats())["pending"] == 0


async def test_a_batch_held_by_a_consumer_that_died_goes_to_another(make_queue: MakeQueue) -> None:
    first = make_queue(batch_size=5, visibility_timeout=0.3, consumer="doomed")
    second = make_queue(batch_size=5, visibility_timeout=0.3, consumer="survivor")
    await first.push_many(list(range(5)))
    entered = asyncio.Event()

    async def hang(messages: list[Any]) -> None:
        entered.set()
        await asyncio.sleep(30)

    doomed = asyncio.create_task(first.process_batch(hang))
    await asyncio.wait_for(entered.wait(), 5)
    doomed.cancel()  # the consumer is gone mid-batch: no ack, and it stops keeping the batch claimed
    got: list[Any] = []

    async def take() -> bool:
        await second.process_batch(lambda messages: got.extend(messages))
        return len(got) == 5

    assert await eventually(take, 5, what="batch taken over") >= 0.2
    assert got == [0, 1, 2, 3, 4]


async def test_a_slow_callback_keeps_its_batch(make_queue: MakeQueue) -> None:
    slow = make_queue(batch_size=3, visibility_timeout=0.15, consumer="slow")
    other = make_queue(batch_size=3, visibility_timeout=0.15, consumer="other")
    await slow.push_many(["a", "b", "c"])
    stolen: list[Any] = []

    async def take_slowly(messages: list[Any]) -> None:
        for _ in range(6):
            await asyncio.sleep(0.1)
            await other.process_batch(lambda m: stolen.extend(m))

    assert await slow.process_batch(take_slowly) == 3
    assert stolen == []


async def test_pushes_past_the_length_cap_are_refused_whole(make_queue: MakeQueue) -> None:
    queue = make_queue(max_length=3, max_message_bytes=64)
    await queue.push_many([1, 2])
    with pytest.raises(QueueFullError):
        await queue.push_many([3, 4])
    await queue.push(3)
    with pytest.raises(PayloadTooLargeError):
        await queue.push("z" * 100)
    assert (await queue.stats())["length"] == 3
