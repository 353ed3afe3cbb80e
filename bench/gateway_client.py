"""Many lean WebSocket clients in one process, for bench_gateway.py (raw asyncio protocols, no aiohttp).

Modes (one JSON line per event on stdout):
  idle N [--deflate] [--traffic]   open N connections (optionally send one compressed publish), hold
  fanout N channel ROUNDS          N subscribers of one channel; per round report first/last arrival
  streams N SECONDS                N subscribers of channel s<i>; report NATS-to-socket latencies
  members N channel|room NAME      N members of one channel or chat room; per round (a message whose text
                                   holds "round=<r> t=<ns>") report every member's latency
Payloads carry "t":<time.monotonic_ns() at publish>; CLOCK_MONOTONIC is shared by processes on Linux.
The process runs on the event loop ``RAAF_EVENT_LOOP`` names (the bench asks for uvloop).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import resource
import select
import sys
import time
import zlib
from collections.abc import Callable

from shared.service.eventloop import run

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def out(**event: object) -> None:
    print(json.dumps(event), flush=True)


def client_frame(payload: bytes, deflate: bool = False) -> bytes:
    rsv = 0
    if deflate:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
        payload = (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        rsv = 0x40
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81 | rsv, 0x80 | n]) if n < 126 else bytes([0x81 | rsv, 0xFE]) + n.to_bytes(2, "big")
    return head + mask + masked


class Client(asyncio.Protocol):
    __slots__ = ("_request", "buf", "index", "on_frame", "ready", "transport", "upgraded")

    def __init__(self, index: int, ready: asyncio.Future[Client], on_frame: object, deflate: bool,
                 port: int) -> None:
        self.index = index
        self.ready = ready
        self.on_frame = on_frame
        self.buf = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self._request = self._handshake(deflate, port)

    @staticmethod
    def _handshake(deflate: bool, port: int) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
        return (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.upgraded = True
            self.buf = self.buf[end + 4:]
            if not self.ready.done():
                self.ready.set_result(self)
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            n = buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if len(buf) - pos < head + n:
                break
            self.on_frame(self, buf[pos], buf[pos + head:pos + head + n])  # type: ignore[operator]
            pos += head + n
        self.buf = buf[pos:]

    def send(self, payload: bytes, deflate: bool = False) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(payload, deflate))


async def open_clients(n: int, port: int, on_frame: object, deflate: bool = False) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    gate = asyncio.Semaphore(256)

    async def one(i: int) -> None:
        async with gate:
            ready: asyncio.Future[Client] = loop.create_future()
            await loop.create_connection(lambda: Client(i, ready, on_frame, deflate, port), "127.0.0.1", port)
            clients.append(await ready)

    await asyncio.gather(*(one(i) for i in range(n)))
    return sorted(clients, key=lambda c: c.index)


async def until(done: Callable[[], bool]) -> None:
    for _ in range(12_000):  # ten minutes at most
        if done():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("subscriptions were not all acknowledged")


def is_ack(payload: bytes) -> bool:
    return payload.startswith(b'{"type":"ack"') or payload.startswith(b'{"type": "ack"')


def number_after(payload: bytes, key: bytes) -> int | None:
    """The integer after ``"key":`` in a JSON payload, without decoding it all."""
    at = payload.find(b'"' + key + b'":')
    if at < 0:
        return None
    start = at + len(key) + 3
    while payload[start:start + 1] == b" ":
        start += 1
    end = start
    while payload[end:end + 1].isdigit():
        end += 1
    return int(payload[start:end]) if end > start else None


def stamp(payload: bytes) -> int | None:
    return number_after(payload, b"t")


async def idle(port: int, n: int, deflate: bool, traffic: bool) -> None:
    frames = [0]

    def on_frame(client: Client, first: int, payload: bytes) -> None:
        frames[0] += 1

    clients = await open_clients(n, port, on_frame, deflate)
    await asyncio.sleep(1.0)
    if traffic:
        text = ("the quick brown fox jumps over the lazy dog " * 10).encode()
        for client in clients:
            client.send(b'{"type":"publish","channel":"void","data":{"text":"' + text + b'"}}', deflate)
    out(event="ready", connections=len(clients), frames=frames[0])
    await asyncio.sleep(3600)


async def fanout(port: int, n: int, channel: str, rounds: int) -> None:
    arrivals: dict[int, list[int]] = {}
    acks = [0]

    def on_frame(client: Client, first: int, payload: bytes) -> None:
        now = time.monotonic_ns()
        if is_ack(payload):
            acks[0] += 1
            return
        r = number_after(payload, b"round")
        if r is None:
            return
        t = stamp(payload)
        seen = arrivals.setdefault(r, [])
        seen.append(now)
        if len(seen) == n and t is not None:
            out(event="round", round=r, first_ms=(min(seen) - t) / 1e6, last_ms=(max(seen) - t) / 1e6)

    clients = await open_clients(n, port, on_frame)
    request = json.dumps({"type": "subscribe", "channel": channel, "id": "s"}).encode()
    for client in clients:
        client.send(request)
    await until(lambda: acks[0] >= n)
    out(event="ready", connections=len(clients))
    await asyncio.sleep(3600)


_ROUND = re.compile(rb"round=(\d+) t=(\d+)")


async def members(port: int, n: int, kind: str, name: str) -> None:
    """Join N clients to a channel (``subscribe``) or a chat room (``chat_join``), at most 32 joins in flight
    (the chat service refuses more than its in-flight limit), then report each round's latencies."""
    arrivals: dict[int, list[int]] = {}
    joined = [0]
    reply = b'{"type":"ack"' if kind == "channel" else b'{"type":"chat_joined"'

    def on_frame(client: Client, first: int, payload: bytes) -> None:
        now = time.monotonic_ns()
        if payload.startswith(reply):
            joined[0] += 1
            return
        found = _ROUND.search(payload)
        if found is None:
            return
        seen = arrivals.setdefault(int(found[1]), [])
        seen.append(now - int(found[2]))
        if len(seen) == n:
            out(event="round", round=int(found[1]), latencies_ms=[x / 1e6 for x in sorted(seen)])

    clients = await open_clients(n, port, on_frame)
    request = (json.dumps({"type": "subscribe", "channel": name, "id": "j"}) if kind == "channel"
               else json.dumps({"type": "chat_join", "room": name, "id": "j"})).encode()
    for i, client in enumerate(clients):
        client.send(request)
        in_flight = i + 1 - 32
        await until(lambda: joined[0] >= in_flight)  # noqa: B023 (awaited before the next turn)
    await until(lambda: joined[0] >= n)
    out(event="ready", connections=len(clients))
    await asyncio.sleep(3600)


_STAMP = re.compile(rb'"t":(\d+),')


class StampPoller:
    """The stream clients' reader once subscribed: one epoll for all their sockets, polled every ``interval``.

    A client woken by every message costs both processes a wakeup per message: on loopback the writer's
    ``send()`` wakes the reader, a cost a server does not pay for clients on other machines. Polling every
    half millisecond reads many sockets per wakeup and adds at most that interval to a measured latency (it
    can only make latencies look longer). No frame parsing: one regex pass per read finds the stamps, each
    read in full (the pattern needs the comma after the digits); what follows the last stamp found stays for
    the next read, so a message split across reads is counted once, when it is complete."""

    def __init__(self, clients: list[Client], interval: float = 0.0005) -> None:
        self.interval = interval
        self.epoll = select.epoll()
        self.tails: dict[int, bytes] = {}
        for client in clients:
            assert client.transport is not None
            client.transport.pause_reading()  # from now on this poller reads the socket, not the loop
            fd = client.transport.get_extra_info("socket").fileno()
            self.tails[fd] = client.buf
            self.epoll.register(fd, select.EPOLLIN)

    def run(self, seconds: float, latencies: list[int] | None) -> None:
        """Read for ``seconds``, appending each stamp's latency (ns) to ``latencies`` unless it is None."""
        poll, read, findall, clock, tails = self.epoll.poll, os.read, _STAMP.findall, time.monotonic_ns, self.tails
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for fd, _ in poll(0):
                data = read(fd, 65536)
                if not data:
                    self.epoll.unregister(fd)
                    continue
                now = clock()  # after the read: never earlier than the message's arrival
                tail = tails[fd]
                buf = tail + data if tail else data
                if latencies is not None:
                    latencies.extend([now - int(stamp) for stamp in findall(buf)])
                end = buf.rfind(b",")  # no stamp ends after the last comma
                tails[fd] = buf[max(end, len(buf) - 64):] if end >= 0 else buf[-64:]
            time.sleep(self.interval)


async def streams(port: int, n: int, seconds: float) -> None:
    latencies: list[int] = []
    acks = [0]

    def on_frame(client: Client, first: int, payload: bytes) -> None:
        if is_ack(payload):
            acks[0] += 1

    clients = await open_clients(n, port, on_frame)
    for client in clients:
        client.send(json.dumps({"type": "subscribe", "channel": f"s{client.index}", "id": "s"}).encode())
    await until(lambda: acks[0] >= n)
    out(event="ready", connections=len(clients))
    poller = StampPoller(clients)
    poller.run(1.0, None)  # warm-up
    out(event="measuring")
    poller.run(seconds, latencies)
    out(event="measured")
    latencies.sort()
    count = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(count - 1, int(p * count))] / 1e6 if count else float("nan")

    out(event="latency", received=count, p50_ms=pct(0.5), p90_ms=pct(0.9), p99_ms=pct(0.99),
        max_ms=latencies[-1] / 1e6 if count else float("nan"))
    await asyncio.sleep(3600)


def main() -> None:
    mode, port, *rest = sys.argv[1:]
    if mode == "idle":
        coro = idle(int(port), int(rest[0]), "--deflate" in rest, "--traffic" in rest)
    elif mode == "fanout":
        coro = fanout(int(port), int(rest[0]), rest[1], int(rest[2]))
    elif mode == "members":
        coro = members(int(port), int(rest[0]), rest[1], rest[2])
    elif mode == "streams":
        coro = streams(int(port), int(rest[0]), float(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    run(coro, os.environ.get("RAAF_EVENT_LOOP", "auto"))


if __name__ == "__main__":
    main()
