"""fastpaths.LeanPublish against a real nats-server: order, limits, reconnect buffering, flush/drain, fallback."""

from __future__ import annotations

import logging

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from shared.devstack.servers import NatsServer
from shared.nats.fastpaths import LeanPublish
from tests.support.env import unique_prefix
from tests.support.waiting import eventually


async def collect(nc: NATS, subject: str) -> list[Msg]:
    got: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        got.append(msg)

    await nc.subscribe(subject, cb=on_message, pending_msgs_limit=1_000_000)
    await nc.flush()
    return got


async def test_lean_publishes_keep_their_order_with_every_other_publish_on_the_connection(
        nats_server: NatsServer) -> None:
    subject = f"{unique_prefix()}.order"
    reader = await nats.connect(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        got = await collect(reader, subject)
        lean = LeanPublish(nc)
        assert lean.lean
        bodies = [b"", b"line\r\nbreak", b"PUB x 3\r\nabc", "ünïcode".encode(), b"x" * 5000]
        for n in range(3000):
            body = bodies[n % len(bodies)] + str(n).encode()
            if n % 3 == 0:
                await nc.publish(subject, body)
            elif n % 3 == 1:
                await lean.publish(subject, body)
            else:
                await nc.publish(subject, body, headers={"n": str(n)})
        await nc.flush()
        await eventually(lambda: len(got) == 3000, 10)
        assert [m.data for m in got] == [bodies[n % len(bodies)] + str(n).encode() for n in range(3000)]
        assert got[2].headers == {"n": "2"} and got[1].headers is None
        assert nc.stats["out_msgs"] == 3000
    finally:
        await reader.close()
        await nc.close()


async def test_an_oversized_payload_is_a_max_payload_error_and_the_connection_carries_on(
        nats_server: NatsServer) -> None:
    subject = f"{unique_prefix()}.big"
    nc = await nats.connect(nats_server.url)
    try:
        got = await collect(nc, subject)
        lean = LeanPublish(nc)
        with pytest.raises(nats.errors.MaxPayloadError):
            await lean.publish(subject, b"x" * (nc.max_payload + 1))
        await lean.publish(subject, b"x" * nc.max_payload)
        await nc.flush()
        await eventually(lambda: len(got) == 1, 10)
        assert len(got[0].data) == nc.max_payload and nc.is_connected
    finally:
        await nc.close()


async def test_publishes_while_reconnecting_are_buffered_and_arrive_after(private_nats: NatsServer) -> None:
    subject = f"{unique_prefix()}.reconnect"
    nc = await nats.connect(private_nats.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1)
    try:
        got = await collect(nc, subject)
        lean = LeanPublish(nc)
        await lean.publish(subject, b"before")
        await nc.flush()
        private_nats.stop()
        await eventually(lambda: nc.is_reconnecting, 10)
        for n in range(10):
            await lean.publish(subject, f"during {n}".encode())
        private_nats.start()
        await eventually(lambda: nc.is_connected and not nc.is_reconnecting, 10)
        await lean.publish(subject, b"after")
        await nc.flush()
        await eventually(lambda: len(got) == 12, 10)
        assert [m.data for m in got] == [b"before", *(f"during {n}".encode() for n in range(10)), b"after"]
    finally:
        await nc.close()


async def test_a_publish_past_the_reconnect_buffer_is_an_outbound_buffer_limit_error(
        private_nats: NatsServer) -> None:
    nc = await nats.connect(private_nats.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1,
                            pending_size=1024)
    try:
        lean = LeanPublish(nc)
        private_nats.stop()
        await eventually(lambda: nc.is_reconnecting, 10)
        await lean.publish("any.subject", b"x" * 100)
        with pytest.raises(nats.errors.OutboundBufferLimitError):
            await lean.publish("any.subject", b"x" * 2000)
        private_nats.start()  # nats-py's close() while reconnecting can trip over the lost transport
        await eventually(lambda: nc.is_connected, 10)
    finally:
        await nc.close()


@pytest.mark.parametrize("finish", ["flush", "drain"])
async def test_flush_and_drain_send_every_lean_publish(nats_server: NatsServer, finish: str) -> None:
    subject = f"{unique_prefix()}.bulk"
    reader = await nats.connect(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        got = await collect(reader, subject)
        lean = LeanPublish(nc)
        for n in range(20_000):  # never yields: the pending buffer fills and is force-flushed as nats-py does
            await lean.publish(subject, str(n).encode())
        await (nc.flush() if finish == "flush" else nc.drain())
        await eventually(lambda: len(got) == 20_000, 10)
        assert [int(m.data) for m in got] == list(range(20_000))
    finally:
        await reader.close()
        await nc.close()


async def test_after_close_a_lean_publish_is_nats_pys_connection_closed_error(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    lean = LeanPublish(nc)
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await lean.publish("any.subject", b"x")


async def test_a_client_without_the_expected_shape_falls_back_to_nats_pys_publish(
        nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    nc = NATS()
    with caplog.at_level(logging.WARNING, logger="raaf.nats"):
        early = LeanPublish(nc)  # not connected yet: no flusher queue, so not the shape the lean path writes to
    assert not early.lean
    assert any("'lean_publish' is off" in r.getMessage() for r in caplog.records)
    with pytest.raises(nats.errors.OutboundBufferLimitError):  # what nc.publish says for a client never connected
        await early.publish("any.subject", b"x")
    await nc.connect(nats_server.url)
    try:
        subject = f"{unique_prefix()}.fallback"
        got = await collect(nc, subject)
        await early.publish(subject, b"through nc.publish")
        await nc.flush()
        await eventually(lambda: len(got) == 1, 10)
        assert got[0].data == b"through nc.publish" and LeanPublish(nc).lean
    finally:
        await nc.close()
