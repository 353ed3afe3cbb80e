"""Two gateway processes on one NATS: channels, presence and stats span both; limits and junk never kill one."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.devstack.servers import NatsServer, free_port
from tests.support.gateway import (
    SECRET,
    RawWebSocket,
    connect,
    expect_close,
    gateway_env,
    receive,
    receive_type,
    request,
    token,
)
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually


@dataclass
class Gateway:
    process: ServiceProcess
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws{query}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    @property
    def log(self) -> str:
        return self.process.log_path.read_text()


@dataclass
class Pair:
    a: Gateway  # JWT auth, a rate limit, small messages
    b: Gateway  # JWT auth, no rate limit (for the fuzzer)


@pytest.fixture(scope="module")
def pair(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    logs = tmp_path_factory.mktemp("gateways")
    base = gateway_env(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                       GATEWAY_RESTRICTED_CHANNELS="staff-*", WEBSOCKET_MAX_MESSAGE_SIZE="2048",
                       WEBSOCKET_SEND_QUEUE_BYTES="65536", WEBSOCKET_CLOSE_TIMEOUT="30", LOG_LEVEL="info")
    gateways = []
    for name, extra in (("a", {"WEBSOCKET_RATE_LIMIT": "60", "WEBSOCKET_RATE_BURST": "20"}),
                        ("b", {"WEBSOCKET_RATE_LIMIT": "0", "WEBSOCKET_MAX_SUBSCRIPTIONS": "1000"})):
        port = free_port()
        env = {**base, **extra, "WEBSOCKET_PORT": str(port)}
        process = ServiceProcess("services.gateway", env, Path(logs) / f"gateway-{name}.log")
        process.start()
        gateways.append(Gateway(process, port))
    deadline = time.monotonic() + 30
    while not all(g.ready() for g in gateways):
        assert all(g.process.proc is not None and g.process.proc.poll() is None for g in gateways), \
            [g.log[-2000:] for g in gateways]
        assert time.monotonic() < deadline, "gateways not ready"
        time.sleep(0.05)
    yield Pair(*gateways)
    for g in gateways:
        assert g.process.terminate() == 0, g.log[-3000:]
        assert "Traceback" not in g.log, g.log[-5000:]


def authed(query_sub: str = "alice", **claims: object) -> str:
    return f"?token={token(query_sub, **claims)}"  # type: ignore[arg-type]


async def test_a_broadcast_on_one_gateway_reaches_subscribers_on_both(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        on_a, _ = await connect(session, pair.a.ws(authed("ann")))
        on_b, _ = await connect(session, pair.b.ws(authed("ben")))
        for ws in (on_a, on_b):
            assert (await request(ws, {"type": "subscribe", "channel": "town-square"}))["type"] == "ack"
        assert (await request(on_a, {"type": "publish", "channel": "town-square", "data": {"n": 1}}))["type"] == "ack"
        for ws in (on_a, on_b):
            message = await receive_type(ws, "message")
            assert (message["data"], message["sender"]) == ({"n": 1}, "ann")
        async with session.post(f"{pair.b.http}/v1/channels/town-square/messages", json={"n": 2},
                                headers={"Authorization": f"Bearer {token('rest')}"}) as resp:
            assert resp.status == 202
        for ws in (on_a, on_b):
            assert (await receive_type(ws, "message"))["data"] == {"n": 2}
        await on_a.close()
        await on_b.close()


async def test_presence_and_stats_span_both_gateways(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        on_a, _ = await connect(session, pair.a.ws(authed("ann", name="Ann")))
        on_b, _ = await connect(session, pair.b.ws(authed("ben", name="Ben")))
        for ws in (on_a, on_b):
            await request(ws, {"type": "subscribe", "channel": "lounge"})
        presence = await request(on_a, {"type": "presence", "channel": "lounge"})
        # Display names, never subjects (GATEWAY_PRESENCE_SUBJECTS is off by default).
        assert sorted((m["name"], m.get("subject")) for m in presence["members"]) == [("Ann", None), ("Ben", None)]
        async with session.get(f"{pair.b.http}/v1/stats", headers={"Authorization": f"Bearer {token()}"}) as resp:
            stats = await resp.json()
        assert stats["gateways"] == 2
        assert stats["cluster"]["websocket_connections"] >= 2
        assert stats["cluster"]["connections"] > stats["local"]["connections"]
        await on_a.close()
        await on_b.close()


async def test_an_unauthorized_subscribe_is_refused_on_either_gateway(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        for gateway in (pair.a, pair.b):
            anonymous, _ = await connect(session, gateway.ws())
            assert (await request(anonymous, {"type": "subscribe", "channel": "x"}))["code"] == "unauthorized"
            user, _ = await connect(session, gateway.ws(authed("eve")))
            assert (await request(user, {"type": "subscribe", "channel": "staff-only"}))["code"] == "forbidden"
            staff, _ = await connect(session, gateway.ws(authed("sam", channels=["staff-*"])))
            assert (await request(staff, {"type": "subscribe", "channel": "staff-only"}))["type"] == "ack"
            for ws in (anonymous, user, staff):
                await ws.close()


async def test_tricky_channel_names_published_on_one_gateway_reach_only_their_channel_on_the_other(
    pair: Pair,
) -> None:
    names = ["q", "q.r", "q.*", "q.>", "*", ">", "q r", "q~2er"]
    async with aiohttp.ClientSession() as session:
        listeners = {}
        for name in names:
            ws, _ = await connect(session, pair.b.ws(authed("l")))
            assert (await request(ws, {"type": "subscribe", "channel": name}))["type"] == "ack"
            listeners[name] = ws
        publisher, _ = await connect(session, pair.a.ws(authed("p")))
        for name in names:
            assert (await request(publisher, {"type": "publish", "channel": name, "data": name}))["type"] == "ack"
        for name, ws in listeners.items():
            assert (await receive_type(ws, "message"))["data"] == name
            with pytest.raises(asyncio.TimeoutError):
                await receive_type(ws, "message", timeout=0.2)
        for ws in [*listeners.values(), publisher]:
            await ws.close()


async def test_rate_and_size_limits_answer_typed_errors_and_the_gateway_stays_up(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, pair.a.ws(authed("flood")))
        too_big = await request(ws, {"type": "publish", "channel": "c", "data": "x" * 4000})
        assert too_big["code"] == "too_large"
        for i in range(40):
            await ws.send_json({"type": "ping", "id": f"p{i}"})
        replies = [await receive(ws) for _ in range(40)]
        codes = [r.get("code") for r in replies if r["type"] == "error"]
        assert codes and set(codes) == {"rate_limited"}
        assert len(replies) - len(codes) <= 20
        await ws.close()
    assert pair.a.ready() and pair.b.ready()


async def test_a_slow_consumer_is_cut_off_while_subscribers_on_both_gateways_keep_receiving(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        fast_a, _ = await connect(session, pair.a.ws(authed("fa")))
        fast_b, _ = await connect(session, pair.b.ws(authed("fb")))
        for ws in (fast_a, fast_b):
            await request(ws, {"type": "subscribe", "channel": "hose"})
        slow = await RawWebSocket.open("127.0.0.1", pair.b.port)
        await slow.read_frame()
        slow.send_text(json.dumps({"type": "auth", "token": token("slow"), "id": "a"}).encode())
        await slow.read_frame()
        slow.send_text(b'{"type":"subscribe","channel":"hose","id":"s"}')
        await slow.read_frame()
        # Published with nats directly: no client rate limit, and no gateway in the publishing path.
        import nats

        nc = await nats.connect(_nats_url(pair))
        subject = f"{_prefix(pair)}.channel.hose"
        counts = {"a": 0, "b": 0}
        published = 0

        async def count(ws: aiohttp.ClientWebSocketResponse, key: str) -> None:
            while True:
                if (await receive(ws, timeout=15))["type"] == "message":
                    counts[key] += 1

        readers = [asyncio.create_task(count(fast_a, "a")), asyncio.create_task(count(fast_b, "b"))]
        blob = json.dumps({"pad": "x" * 8000}).encode()
        cut_off = False
        while published < 6000 and not cut_off:
            for _ in range(100):
                await nc.publish(subject, blob)
                published += 1
            await nc.flush()
            stats = await _stats(session, pair.b)
            cut_off = stats["local"]["slow_consumers"] >= 1
        assert cut_off, "the slow consumer was never cut off"
        await eventually(lambda: min(counts.values()) >= published, timeout=20)
        assert counts == {"a": published, "b": published}
        for task in readers:
            task.cancel()
        assert await slow.close_codes() == [4008]
        slow.close()
        await nc.close()
        for ws in (fast_a, fast_b):
            await ws.close()


async def test_a_slow_consumer_alone_on_its_channel_is_cut_off_and_the_next_stream_still_flows(pair: Pair) -> None:
    import nats

    async with aiohttp.ClientSession() as session:
        before = (await _stats(session, pair.b))["local"]["slow_consumers"]
        slow = await RawWebSocket.open("127.0.0.1", pair.b.port)
        await slow.read_frame()
        slow.send_text(json.dumps({"type": "auth", "token": token("solo"), "id": "a"}).encode())
        await slow.read_frame()
        slow.send_text(b'{"type":"subscribe","channel":"solo-slow","id":"s"}')
        await slow.read_frame()
        fast, _ = await connect(session, pair.b.ws(authed("next")))
        await request(fast, {"type": "subscribe", "channel": "solo-fast"})
        nc = await nats.connect(_nats_url(pair))
        blob = json.dumps({"pad": "x" * 8000}).encode()
        for _ in range(60):  # per-client streams take the one-recipient path: it applies the same limit
            for _ in range(100):
                await nc.publish(f"{_prefix(pair)}.channel.solo-slow", blob)
            await nc.flush()
            if (await _stats(session, pair.b))["local"]["slow_consumers"] > before:
                break
        assert (await _stats(session, pair.b))["local"]["slow_consumers"] == before + 1
        await nc.publish(f"{_prefix(pair)}.channel.solo-fast", b'{"n":1}')
        assert (await receive_type(fast, "message"))["data"] == {"n": 1}
        assert await slow.close_codes() == [4008]
        slow.close()
        await nc.close()
        await fast.close()


async def _stats(session: aiohttp.ClientSession, gateway: Gateway) -> dict[str, dict[str, int]]:
    async with session.get(f"{gateway.http}/v1/stats?scope=local",
                           headers={"Authorization": f"Bearer {token()}"}) as resp:
        value: dict[str, dict[str, int]] = await resp.json()
        return value


def _nats_url(pair: Pair) -> str:
    return pair.a.process.env["NATS_URL"]


def _prefix(pair: Pair) -> str:
    return pair.a.process.env["RAAF_PREFIX"]


# ---- fuzzing: thousands of random frames, never a crash -----------------------------------------

TYPES = ["auth", "subscribe", "unsubscribe", "publish", "ping", "presence", "agent_stream", "", "0", None]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)},
    optional={
        "id": st.one_of(st.text(max_size=140), st.integers(), st.none()),
        "channel": st.one_of(st.text(max_size=210), st.integers(), st.sampled_from(["a", "a.b", "*", ">"])),
        "data": json_values,
        "token": st.text(max_size=50),
        "presence": json_values,
        "info": json_values,
    },
)
frames = st.one_of(
    st.tuples(st.just(0x1), messages.map(lambda m: json.dumps(m).encode())),
    st.tuples(st.just(0x1), st.text(max_size=200).map(str.encode)),
    st.tuples(st.sampled_from([0x1, 0x2]), st.binary(max_size=200)),
    st.tuples(st.just(0x1), json_values.map(lambda v: json.dumps(v).encode())),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=20, max_size=60))
def test_thousands_of_random_frames_get_errors_or_answers_and_never_a_crash(pair: Pair,
                                                                              batch: list[tuple[int, bytes]]) -> None:
    asyncio.run(_send_random_frames(pair.b, batch))


async def _send_random_frames(gateway: Gateway, batch: list[tuple[int, bytes]]) -> None:
    raw = await RawWebSocket.open("127.0.0.1", gateway.port)
    try:
        await raw.read_frame()
        raw.send_text(json.dumps({"type": "auth", "token": token("fuzz"), "id": "auth"}).encode())
        for opcode, payload in batch:
            raw.send_text(payload, opcode)
        raw.send_text(b'{"type":"ping","id":"end-of-batch"}')
        while True:
            _, opcode, payload = await raw.read_frame(timeout=10)
            assert opcode == 0x1, f"the connection must survive, got opcode {opcode} {payload[:60]!r}"
            reply = msgspec.json.decode(payload)
            assert reply.get("code") != "internal", reply
            if reply.get("ref") == "end-of-batch" and reply["type"] == "pong":
                break
    finally:
        raw.close()


async def test_the_fuzzed_gateway_took_thousands_of_frames_and_is_still_ready(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        stats = await _stats(session, pair.b)
    assert stats["local"]["messages_received"] >= 1000
    assert stats["local"]["errors_sent"] >= 300
    assert pair.b.ready()
    assert "Traceback" not in pair.b.log


async def test_a_gateway_that_stops_tells_its_clients_to_reconnect(pair: Pair) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, pair.a.ws(authed("last")))
        assert pair.a.process.proc is not None
        pair.a.process.proc.terminate()
        assert await expect_close(ws, timeout=10) == 1001
        await asyncio.to_thread(pair.a.process.proc.wait, 15)
        assert pair.a.process.proc.returncode == 0
