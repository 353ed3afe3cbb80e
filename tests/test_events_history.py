"""Event history in JetStream: last N across process and server restarts, dedup by id, replay, limits."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import nats
import pytest
from prometheus_client import CollectorRegistry

from proto.errors import ErrorCode
from proto.events import Event
from raaf import EmitError, EventEmitter, HistoryUnavailableError
from shared.devstack.servers import NatsServer
from tests.support.env import ROOT, unique_prefix
from tests.support.events import TEST_ENV, delete_events_stream, emitters, event_settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.usefixtures("delivery_path")  # every test on both delivery paths

EMITTING_PROCESS = """
import asyncio, sys
from raaf import EventEmitter

async def main(first: int, count: int) -> None:
    async with EventEmitter() as emitter:
        for n in range(first, first + count):
            await emitter.emit("order.placed" if n % 2 else "order.paid", {"n": n})

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def run_emitting_process(nats_url: str, prefix: str, first: int, count: int) -> None:
    env = {**os.environ, "NATS_URL": nats_url, "RAAF_PREFIX": prefix, "LOG_LEVEL": "warning", **TEST_ENV}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", EMITTING_PROCESS, str(first), str(count),
                                                env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()


async def test_history_returns_the_last_n_after_the_emitting_process_restarts(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    try:
        await last_n_after_restart(nats_server, prefix)
    finally:
        await delete_events_stream(nats_server.url, prefix)


async def last_n_after_restart(nats_server: NatsServer, prefix: str) -> None:
    await run_emitting_process(nats_server.url, prefix, 0, 20)
    await run_emitting_process(nats_server.url, prefix, 20, 10)  # the emitting process, restarted
    async with EventEmitter(settings=event_settings(nats_server.url, prefix), registry=CollectorRegistry()) as reader:
        last = await reader.history("order.*", limit=5)
        assert [event.data["n"] for event in last] == [25, 26, 27, 28, 29]
        assert [event.event for event in last] == ["order.placed", "order.paid"] * 2 + ["order.placed"]
        seqs = [event.seq for event in last]
        assert seqs == sorted(seqs) and None not in seqs
        placed = await reader.history("order.placed", limit=3)
        assert [event.data["n"] for event in placed] == [25, 27, 29]
        everything = await reader.history()
        assert [event.data["n"] for event in everything] == list(range(30))


async def test_history_survives_a_nats_restart_and_the_emitter_carries_on(private_nats: NatsServer) -> None:
    async with emitters(private_nats.url, EVENTS_PUBLISH_TIMEOUT="0.5") as make:
        emitter = await make()
        for n in range(5):
            await emitter.emit("audit.entry", n)
        private_nats.stop()
        private_nats.start()
        # The client may not have noticed yet: the first try goes nowhere, is not confirmed, and is retried
        # (same id) on the new connection.
        await emitter.emit("audit.entry", 5)
        assert [event.data for event in await emitter.history("audit.*")] == [0, 1, 2, 3, 4, 5]
        assert emitter.stats()["emit_failures"] == 0


async def test_a_retried_emit_with_the_same_id_is_stored_once(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        first = await emitter.emit("payment.captured", {"amount": 10}, id="pay-42")
        again = await emitter.emit("payment.captured", {"amount": 10}, id="pay-42")
        unconfirmed = await emitter.emit("payment.captured", {"amount": 10}, id="pay-42", confirm=False)
        assert first.id == again.id == unconfirmed.id == "pay-42"
        await emitter.emit("payment.captured", {"amount": 11}, id="pay-43", confirm=False)

        async def both_stored() -> list[Event]:  # unconfirmed emits are stored a moment later
            stored = await emitter.history("payment.*")
            return stored if len(stored) >= 2 else []

        stored = await eventually(both_stored, 2, interval=0.02, what="both unconfirmed emits in the history")
        assert [(event.id, event.data["amount"]) for event in stored] == [("pay-42", 10), ("pay-43", 11)]
        assert emitter.stats()["duplicates"] == 1


async def test_history_replays_from_a_sequence_and_from_a_time(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        for n in range(5):
            await emitter.emit("tick", n)
        await asyncio.sleep(0.05)  # a gap in time between the two halves
        middle = time.time()
        for n in range(5, 10):
            await emitter.emit("tick", n)
        all_events = await emitter.history("tick")
        third = all_events[2]
        assert third.seq is not None
        assert [e.data for e in await emitter.history("tick", after_seq=third.seq, limit=3)] == [3, 4, 5]
        assert [e.data for e in await emitter.history("tick", since=middle)] == [5, 6, 7, 8, 9]
        assert await emitter.history("tick", after_seq=all_events[-1].seq or 0) == []
        with pytest.raises(ValueError):
            await emitter.history("tick", since=middle, after_seq=1)


async def test_the_last_n_of_one_name_among_many_is_exact(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        tasks = [emitter.emit_async("metric.cpu" if n % 3 else "metric.mem", n) for n in range(900)]
        await asyncio.gather(*tasks)
        # 300 "mem" among 900: past the size where the reader scans everything, so it searches for the start.
        last = await emitter.history("metric.mem", limit=7)
        assert [event.data for event in last] == list(range(879, 900, 3))
        assert [event.data for event in await emitter.history("metric.*", limit=4)] == [896, 897, 898, 899]


async def test_history_keeps_history_size_events_per_name(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_HISTORY_SIZE="3", EVENTS_HISTORY_MAX_READ="4") as make:
        emitter = await make()
        for n in range(6):
            await emitter.emit("chat.msg", n)
            await emitter.emit("chat.join", n)
        assert [event.data for event in await emitter.history("chat.msg", limit=100)] == [3, 4, 5]
        assert len(await emitter.history("chat.*", limit=100)) == 4  # EVENTS_HISTORY_MAX_READ per call
        assert [e.data for e in await emitter.history("chat.*", limit=2)] == [5, 5]


async def test_history_includes_events_published_with_plain_nats(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make()
        prefix = emitter.settings.runtime.prefix
        nc = await nats.connect(nats_server.url)
        try:
            ack = await nc.jetstream().publish(f"{prefix}.events.user.login", b'{"user_id":"u1"}')
        finally:
            await nc.close()
        [event] = await emitter.history("user.login")
        assert (event.event, event.data, event.seq, event.id) == ("user.login", {"user_id": "u1"}, ack.seq,
                                                                  f"seq-{ack.seq}")
        assert abs(event.timestamp - time.time()) < 60


async def test_history_when_disabled_is_a_typed_error(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url) as make:
        emitter = await make(enable_history=False)
        with pytest.raises(HistoryUnavailableError) as caught:
            await emitter.history("a.*")
        assert caught.value.code is ErrorCode.UNAVAILABLE


async def test_a_confirmed_emit_without_a_stream_fails_typed_after_its_retries(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    settings = event_settings(nats_server.url, prefix, EVENTS_PUBLISH_TIMEOUT="0.2", EVENTS_PUBLISH_RETRIES="1")
    async with EventEmitter(settings=settings, registry=CollectorRegistry(), provision=False) as emitter:
        with pytest.raises(EmitError) as caught:
            await emitter.emit("lost.event", 1)
        assert caught.value.code is ErrorCode.CONNECTION_ERROR and caught.value.event_id
        assert "try 2 of 2" in str(caught.value)
        with pytest.raises(HistoryUnavailableError):
            await emitter.history("lost.*")
        assert emitter.stats()["emit_failures"] == 1


async def test_pipelined_emits_through_a_nats_restart_are_each_stored_exactly_once(private_nats: NatsServer) -> None:
    async with emitters(private_nats.url, EVENTS_PUBLISH_TIMEOUT="0.5", EVENTS_PUBLISH_RETRIES="10") as make:
        emitter = await make()
        first = [emitter.emit_async("ledger.entry", n) for n in range(300)]
        private_nats.stop()
        private_nats.start()
        second = [emitter.emit_async("ledger.entry", n) for n in range(300, 600)]
        sent = await asyncio.wait_for(asyncio.gather(*first, *second), 30)
        assert [event.data for event in sent] == list(range(600))
        stored = await emitter.history("ledger.entry", limit=1000)
        assert sorted(event.data for event in stored) == list(range(600))  # none lost, none twice
        assert emitter.stats()["emit_failures"] == 0 and emitter.stats()["pending_emits"] == 0


async def test_an_emit_async_the_stream_refuses_fails_typed(nats_server: NatsServer) -> None:
    async with emitters(nats_server.url, EVENTS_PUBLISH_TIMEOUT="0.2", EVENTS_PUBLISH_RETRIES="1") as make:
        emitter = await make(provision=False)  # no stream captures the subjects: nobody acknowledges
        with pytest.raises(EmitError, match="try 2 of 2"):
            await emitter.emit_async("orphan.event", 1)
        assert emitter.stats()["pending_emits"] == 0
