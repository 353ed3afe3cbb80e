"""Connections: the connection limit, heartbeats, idle timeout, slow consumers, compression, rate limit."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest

from services.gateway import GatewayApp
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import (
    RawWebSocket,
    connect,
    expect_close,
    make_gateway,
    receive,
    receive_type,
    request,
    ws_url,
)
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]


async def test_connections_over_the_limit_are_refused_with_close_code_1013(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_MAX_CONNECTIONS="2"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        first, _ = await connect(session, ws_url(app))
        second, _ = await connect(session, ws_url(app))
        third = await session.ws_connect(ws_url(app))
        assert await expect_close(third) == 1013
        await first.close()
        await eventually(lambda: app.registry.counts["ws"] == 1, what="the gateway freeing the closed one's slot")
        fourth, _ = await connect(session, ws_url(app))  # a freed slot is usable again
        await second.close()
        await fourth.close()
    assert app.counters.refused["max_connections"] == 1


async def test_a_dead_peer_is_dropped_within_ping_interval_plus_pong_timeout(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    interval, pong_timeout = 0.4, 0.3
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_HEARTBEAT_INTERVAL=str(interval),
                                       WEBSOCKET_PONG_TIMEOUT=str(pong_timeout)))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        alive, _ = await connect(session, ws_url(app))  # aiohttp answers pings while it reads
        replies: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()

        async def keep_reading() -> None:
            async for msg in alive:
                await replies.put(msg)

        reader = asyncio.create_task(keep_reading())
        dead = await RawWebSocket.open("127.0.0.1", app.http_port)  # answers nothing
        await dead.read_frame()
        went_silent = time.monotonic()
        _, opcode, _ = await dead.read_frame(timeout=2)
        assert opcode == 0x9, "a quiet connection gets a ping"
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            await dead.read_frame(timeout=3)
        elapsed = time.monotonic() - went_silent
        assert elapsed <= interval + pong_timeout + 0.25, elapsed
        await asyncio.sleep(2 * (interval + pong_timeout))
        await alive.send_json({"type": "ping", "id": "still-here"})
        reply = msgspec.json.decode((await asyncio.wait_for(replies.get(), 2)).data)
        assert reply["ref"] == "still-here", "a live peer is kept"
        await alive.close()
        await reader
    assert app.counters.disconnects["heartbeat"] == 1


async def test_an_idle_connection_is_closed_but_pings_keep_it_open(nats_server: NatsServer,
                                                                   start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_IDLE_TIMEOUT="0.6"))
    async with aiohttp.ClientSession() as session:
        idle, _ = await connect(session, ws_url(app))  # type: ignore[arg-type]
        busy, _ = await connect(session, ws_url(app))  # type: ignore[arg-type]
        started = time.monotonic()
        while time.monotonic() - started < 1.2:
            assert (await request(busy, {"type": "ping"}))["type"] == "pong"
            await asyncio.sleep(0.2)
        assert await expect_close(idle, timeout=0.5) == 4000
        await busy.close()


async def test_a_slow_consumer_is_cut_off_while_the_others_keep_receiving(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_SEND_QUEUE_BYTES="65536",
                                       WEBSOCKET_ENABLE_COMPRESSION="false", WEBSOCKET_CLOSE_TIMEOUT="30"))
    assert isinstance(app, GatewayApp)
    size = 8000
    async with aiohttp.ClientSession() as session:
        fast, _ = await connect(session, ws_url(app))
        await request(fast, {"type": "subscribe", "channel": "firehose"})
        slow = await RawWebSocket.open("127.0.0.1", app.http_port)
        await slow.read_frame()
        slow.send_text(b'{"type":"subscribe","channel":"firehose","id":"s"}')
        await slow.read_frame()  # ack; from now on it reads nothing
        publisher, _ = await connect(session, ws_url(app))
        received = 0
        all_in = asyncio.Event()
        published = 0

        async def consume() -> None:
            nonlocal received
            while True:
                message = await receive(fast, timeout=10)
                if message["type"] == "message":
                    received += 1
                    if received == published:
                        all_in.set()

        consumer = asyncio.create_task(consume())
        # Kernel buffers on both sides take several MB before the gateway's own queue (64 KiB here)
        # fills: publish until the slow one is cut off (at most 40 MB), then a little more.
        while app.counters.slow_consumers == 0 and published < 5000:
            await publisher.send_json({"type": "publish", "channel": "firehose", "data": "x" * size})
            published += 1
            if published % 100 == 0:
                await request(publisher, {"type": "ping"})  # let the gateway catch up
        for _ in range(50):
            await publisher.send_json({"type": "publish", "channel": "firehose", "data": "x" * size})
            published += 1
        if received < published:
            await asyncio.wait_for(all_in.wait(), 20)
        consumer.cancel()
        assert received == published, "the fast subscriber got every message"
        assert app.counters.slow_consumers == 1
        assert app.counters.disconnects["slow_consumer"] == 1
        # The slow one finds the 4008 close frame after what was already queued for it.
        assert await slow.close_codes() == [4008]
        slow.close()
        await fast.close()
        await publisher.close()


async def test_deflate_is_negotiated_without_context_takeover_and_messages_arrive_intact(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_COMPRESSION_THRESHOLD="64"))
    assert isinstance(app, GatewayApp)
    raw = await RawWebSocket.open("127.0.0.1", app.http_port,
                                  extensions="permessage-deflate; client_max_window_bits")
    assert b"server_no_context_takeover" in raw.response and b"client_no_context_takeover" in raw.response
    await raw.read_frame()
    raw.send_text(b'{"type":"subscribe","channel":"z","id":"s"}')
    await raw.read_frame()
    text = "the quick brown fox " * 40
    async with aiohttp.ClientSession() as session:
        client, _ = await connect(session, ws_url(app), compress=15)
        await request(client, {"type": "subscribe", "channel": "z"})
        for n in range(3):
            await client.send_json({"type": "publish", "channel": "z", "data": f"{n}{text}"})
            assert (await receive_type(client, "message"))["data"] == f"{n}{text}"
            first, _, payload = await raw.read_frame()
            assert first & 0x40, "a large message is deflated"
            assert len(payload) < len(text) / 4
            # No context takeover: every message inflates on its own, with a fresh inflater.
            inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            assert msgspec.json.decode(inflated)["data"] == f"{n}{text}"
        small = await request(client, {"type": "ping"})
        assert small["type"] == "pong"
        await client.close()
    raw.close()


async def test_the_rate_limit_answers_typed_errors_and_refills(nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_RATE_LIMIT="600", WEBSOCKET_RATE_BURST="5"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))
        for i in range(8):
            await ws.send_json({"type": "ping", "id": str(i)})
        replies = [await receive(ws) for _ in range(8)]
        assert [r["type"] for r in replies] == ["pong"] * 5 + ["error"] * 3
        assert {r["code"] for r in replies[5:]} == {"rate_limited"}
        assert [r["ref"] for r in replies[5:]] == ["5", "6", "7"]
        assert 0 < replies[5]["details"]["retry_after"] <= 0.1
        await asyncio.sleep(0.25)  # 600/min is 10/s: two tokens back
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        await ws.close()
    assert app.counters.rate_limited == 3


async def test_a_cut_off_consumer_that_never_reads_is_dropped_after_the_close_timeout(
    nats_server: NatsServer, start_app: StartApp
) -> None:
    # A queue bigger than the kernel can still absorb, so the backlog really is stuck in the gateway.
    app = await start_app(make_gateway(nats_server.url, WEBSOCKET_SEND_QUEUE_BYTES=str(8 << 20),
                                       WEBSOCKET_ENABLE_COMPRESSION="false", WEBSOCKET_CLOSE_TIMEOUT="0.3"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        stuck = await RawWebSocket.open("127.0.0.1", app.http_port, rcvbuf=65536)
        await stuck.read_frame()
        stuck.send_text(b'{"type":"subscribe","channel":"flood","id":"s"}')
        await stuck.read_frame()
        publisher, _ = await connect(session, ws_url(app))
        for i in range(8000):
            if app.counters.slow_consumers:
                break
            await publisher.send_json({"type": "publish", "channel": "flood", "data": "x" * 8000})
            if i % 100 == 99:
                await request(publisher, {"type": "ping"})
        assert app.counters.slow_consumers == 1
        await asyncio.sleep(1.0)  # past the close timeout: the gateway drops what it still held
        opcodes = set()
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
            while True:
                _, opcode, _ = await stuck.read_frame(timeout=5)
                opcodes.add(opcode)
        assert 0x8 not in opcodes, "the close frame was still queued when the socket was aborted"
        stuck.close()
        await publisher.close()
