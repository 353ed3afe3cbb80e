"""ChunkParser reads NATS's protocol exactly as nats-py's parser does, however the stream is cut into reads."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from shared.devstack.servers import NatsServer
from shared.nats import fastpaths
from shared.nats.conn import barrier
from tests.support.env import unique_prefix


class Recorder:
    """What a parser hands to the client: every message and control operation, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, hdr: bytes | None) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), data, hdr))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


tokens = st.text(alphabet="abcxyz019_-", min_size=1, max_size=12)
payloads = st.binary(max_size=300) | st.sampled_from([b"", b"MSG x 1 3\r\n", b"\r\n\r\n", b"PING\r\n"])


@st.composite
def operations(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["msg", "msg", "msg", "reply", "hmsg", "ping", "pong", "ok", "info", "err"]))
    if kind in ("msg", "reply"):
        subject, payload, sid = draw(tokens), draw(payloads), draw(st.integers(1, 10**6))
        reply = f" _INBOX.{draw(tokens)}" if kind == "reply" else ""
        return f"MSG {subject} {sid}{reply} {len(payload)}\r\n".encode() + payload + b"\r\n"
    if kind == "hmsg":
        subject, payload, sid = draw(tokens), draw(payloads), draw(st.integers(1, 10**6))
        headers = f"NATS/1.0\r\nX-Id: {draw(tokens)}\r\n\r\n".encode()
        return (f"HMSG {subject} {sid} {len(headers)} {len(headers) + len(payload)}\r\n".encode() + headers + payload
                + b"\r\n")
    return {"ping": b"PING\r\n", "pong": b"PONG\r\n", "ok": b"+OK\r\n", "info": b'INFO {"server_id":"x"}\r\n',
            "err": b"-ERR 'Permissions Violation for Subscription to foo'\r\n"}[kind]


async def feed(parser_class: type[Parser], reads: list[bytes]) -> list[tuple[Any, ...]]:
    recorder = Recorder()
    parser = parser_class(recorder)
    for data in reads:
        await parser.parse(data)
    return recorder.calls


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(stream) + 1) for p in points}), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(operations(), max_size=40), points=st.lists(st.integers(0, 10**6), max_size=12))
def test_the_chunk_parser_hands_over_what_nats_py_does_however_reads_are_cut(ops: list[bytes],
                                                                             points: list[int]) -> None:
    reads = cut(b"".join(ops), points)
    expected = asyncio.run(feed(Parser, reads))
    assert asyncio.run(feed(fastpaths.ChunkParser, reads)) == expected
    assert len(expected) == sum(op != b"+OK\r\n" for op in ops)  # +OK is skipped; everything else is handed over


@pytest.mark.parametrize("line", [b"MSG a b 3\r\nabc\r\n", b"MSG a 1 x\r\nabc\r\n", b"MSG a\r\n", b"WHAT 1\r\n",
                                  b"HMSG a 1 x\r\n"])
async def test_a_malformed_operation_is_a_protocol_error_as_in_nats_py(line: bytes) -> None:
    for parser_class in (Parser, fastpaths.ChunkParser):
        with pytest.raises(ProtocolError):
            await feed(parser_class, [line])


async def test_messages_of_every_kind_arrive_intact_through_a_real_server(nats_server: NatsServer) -> None:
    prefix = unique_prefix()
    nc = await nats.connect(nats_server.url)
    try:
        assert fastpaths.install(nc, parser=True).parser and type(nc._ps) is fastpaths.ChunkParser
        received: list[tuple[str, bytes, dict[str, str] | None]] = []
        done = asyncio.Event()
        sizes = [0, 1, 100, 32_767, 32_768, 100_000, 700_000, 5]

        async def collect(msg: Any) -> None:
            received.append((msg.subject, msg.data, msg.headers))
            if len(received) == len(sizes) + 1:
                done.set()

        await nc.subscribe(f"{prefix}.>", cb=collect)
        await barrier(nc)
        for i, size in enumerate(sizes):
            await nc.publish(f"{prefix}.m{i}", bytes([65 + i]) * size)
        await nc.publish(f"{prefix}.h", b"with headers", headers={"X-Id": "7"})
        await asyncio.wait_for(done.wait(), 10)
        assert received[:-1] == [(f"{prefix}.m{i}", bytes([65 + i]) * size, None) for i, size in enumerate(sizes)]
        assert received[-1] == (f"{prefix}.h", b"with headers", {"X-Id": "7"})

        async def answer(msg: Any) -> None:
            await msg.respond(msg.data[::-1])

        await nc.subscribe(f"{prefix}.echo", cb=answer)
        reply = await nc.request(f"{prefix}.echo", b"olleh", timeout=5)
        assert reply.data == b"hello"
    finally:
        await nc.close()


def test_a_client_of_another_shape_is_left_alone() -> None:
    class Other:
        _ps = object()

    client: Any = Other()
    assert not fastpaths.install(client, parser=True).parser and type(client._ps) is object
