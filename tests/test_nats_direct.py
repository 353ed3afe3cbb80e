"""shared.nats.direct against a real nats-server: routes from the reader, one hook per connection, drain, headers."""

from __future__ import annotations

import logging

import nats
import pytest
from nats.aio.msg import Msg

from shared.devstack.servers import NatsServer
from shared.nats import fastpaths
from shared.nats.conn import barrier
from shared.nats.direct import DirectDelivery, header_value
from tests.support.env import unique_prefix
from tests.support.waiting import eventually


async def direct_client(url: str) -> nats.NATS:
    nc = await nats.connect(url)
    assert fastpaths.install(nc, direct=True).direct
    return nc


async def test_message_routes_get_subject_payload_and_headers_in_arrival_order(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    nc = await direct_client(nats_server.url)
    try:
        got: list[tuple[bytes, bytes, str | None]] = []
        direct = DirectDelivery(nc)
        await direct.subscribe_messages(f"{prefix}.*", lambda subject, payload, headers: got.append(
            (subject, payload, header_value(headers, "Nats-Msg-Id"))))
        await nc.flush()
        for n in range(100):
            await nc.publish(f"{prefix}.n{n % 3}", str(n).encode(), headers={"Nats-Msg-Id": f"m{n}"} if n % 2 else None)
        await nc.flush()
        await eventually(lambda: len(got) == 100, 1, what="all 100 messages delivered")
        assert [int(payload) for _, payload, _ in got] == list(range(100))
        assert got[4] == (f"{prefix}.n1".encode(), b"4", None)
        assert got[5] == (f"{prefix}.n2".encode(), b"5", "m5")
        assert nc.stats["in_msgs"] >= 100
    finally:
        await nc.close()


async def test_deliveries_on_one_connection_share_one_hook_and_leave_other_subscriptions_alone(
        nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    nc = await direct_client(nats_server.url)
    try:
        first, second = DirectDelivery(nc), DirectDelivery(nc)  # e.g. the gateway's channels and its event bus
        hook = nc._process_msg
        assert fastpaths.install(nc, direct=True).direct
        assert DirectDelivery(nc).nc is nc and nc._process_msg is hook  # installed once, not wrapped again
        payloads: list[bytes] = []
        messages: list[bytes] = []
        plain: list[Msg] = []

        async def on_plain(msg: Msg) -> None:
            plain.append(msg)

        async def on_request(msg: Msg) -> None:
            await msg.respond(b"pong:" + msg.data)

        await first.subscribe(f"{prefix}.a", payloads.append)
        await second.subscribe_messages(f"{prefix}.b", lambda subject, payload, headers: messages.append(payload))
        await nc.subscribe(f"{prefix}.c", cb=on_plain)
        await nc.subscribe(f"{prefix}.rpc", cb=on_request)
        await nc.flush()
        for target in ("a", "b", "c"):
            await nc.publish(f"{prefix}.{target}", target.encode())
        reply = await nc.request(f"{prefix}.rpc", b"ping", timeout=2)
        await nc.flush()
        await eventually(lambda: plain, 1, what="the plain subscription's message")
        assert (payloads, messages, [m.data for m in plain], reply.data) == ([b"a"], [b"b"], [b"c"], b"pong:ping")
    finally:
        await nc.close()


async def test_a_route_that_raises_is_logged_and_the_reader_carries_on(nats_server: NatsServer,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    prefix = unique_prefix()
    nc = await direct_client(nats_server.url)
    try:
        got: list[bytes] = []

        def fragile(payload: bytes) -> None:
            if payload == b"bad":
                raise ValueError("route bug")
            got.append(payload)

        await DirectDelivery(nc).subscribe(f"{prefix}.x", fragile)
        await nc.flush()
        with caplog.at_level(logging.ERROR, logger="raaf.nats"):
            for payload in (b"1", b"bad", b"2"):
                await nc.publish(f"{prefix}.x", payload)
            await nc.flush()
            await eventually(lambda: len(got) == 2, 1, what="the messages either side of the bad one")
        assert got == [b"1", b"2"] and nc.is_connected
        assert any("delivering a message" in r.getMessage() for r in caplog.records)
    finally:
        await nc.close()


async def test_drain_delivers_what_was_sent_before_it_then_nothing_more(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    nc = await direct_client(nats_server.url)
    other = await nats.connect(nats_server.url)
    try:
        got: list[bytes] = []
        direct = DirectDelivery(nc)
        sub = await direct.subscribe(f"{prefix}.x", got.append)
        await barrier(nc)  # the SUB is live before the other connection publishes
        for n in range(500):
            await other.publish(f"{prefix}.x", str(n).encode())
        await barrier(other)
        await direct.drain(sub)
        assert [int(p) for p in got] == list(range(500))  # all of them were in before the server saw the UNSUB
        await other.publish(f"{prefix}.x", b"late")
        await barrier(other)
        await nc.flush()
        assert got[-1] == b"499"
        # An unsubscribed route is gone: a new subscription on the same subject gets a new route.
        again: list[bytes] = []
        sub2 = await direct.subscribe(f"{prefix}.x", again.append)
        await barrier(nc)
        await other.publish(f"{prefix}.x", b"new")
        await barrier(other)
        await nc.flush()
        await direct.unsubscribe(sub2)
        assert again == [b"new"] and got[-1] == b"499"
    finally:
        await other.close()
        await nc.close()


@pytest.mark.parametrize(("raw", "value"), [
    (None, None),
    (b"", None),
    (b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n", "abc"),
    (b"NATS/1.0\r\nOther: 1\r\nNats-Msg-Id:  spaced \r\n\r\n", "spaced"),
    (b"NATS/1.0\r\nOther: Nats-Msg-Id: x\r\n\r\n", None),
    (b"NATS/1.0 503\r\n\r\n", None),
    (b"garbage", None),
])
def test_header_value_reads_one_header_from_the_raw_block(raw: bytes | None, value: str | None) -> None:
    assert header_value(raw, "Nats-Msg-Id") == value
