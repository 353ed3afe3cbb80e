"""shared.nats.fastpaths.install against a real nats-server: what is asked and allowed is on, the rest is nats-py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.protocol.parser import Parser

from shared.devstack.servers import NatsServer
from shared.nats import fastpaths
from shared.nats.conn import barrier
from shared.nats.direct import DirectDelivery
from tests.support.env import unique_prefix
from tests.support.nats_shapes import OtherParser, connect_reshaped

EVERY_PATH = fastpaths.FastPaths(parser=True, direct=True, lean_publish=True)


async def round_trip(nc: NATS, subject: str) -> list[bytes]:
    """Publish three messages (one of them lean) on ``subject`` and return what a plain subscription got."""
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        got.append(msg.data)
        if len(got) == 3:
            done.set()

    await nc.subscribe(subject, cb=on_message)
    await barrier(nc)
    await nc.publish(subject, b"plain")
    await fastpaths.LeanPublish(nc).publish(subject, b"lean")
    await nc.publish(subject, b"with headers", headers={"X-Id": "1"})
    await asyncio.wait_for(done.wait(), 5)
    return got


async def test_install_turns_on_only_what_is_asked_and_records_it(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        assert fastpaths.install(nc, parser=True) == fastpaths.FastPaths(parser=True)
        assert fastpaths.active(nc) == fastpaths.FastPaths(parser=True)
        assert type(nc._ps) is fastpaths.ChunkParser
        assert nc._process_msg.__func__ is NATS._process_msg  # type: ignore[attr-defined]  # direct not asked
        # A second caller on the same connection asks for the others; what the first turned on stays on.
        assert fastpaths.install(nc, direct=True, lean_publish=True) == fastpaths.FastPaths(direct=True,
                                                                                            lean_publish=True)
        assert fastpaths.active(nc) == EVERY_PATH
        hook = nc._process_msg
        assert fastpaths.install(nc, parser=True, direct=True, lean_publish=True) == EVERY_PATH
        assert nc._process_msg is hook  # the reader hook is installed once, not wrapped again
        assert await round_trip(nc, f"{unique_prefix()}.on") == [b"plain", b"lean", b"with headers"]
    finally:
        await nc.close()


async def test_with_every_switch_off_the_client_is_left_as_nats_py_made_it(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        assert fastpaths.install(nc) == fastpaths.FastPaths() == fastpaths.active(nc)
        assert type(nc._ps) is Parser
        assert nc._process_msg.__func__ is NATS._process_msg  # type: ignore[attr-defined]
        with pytest.raises(fastpaths.FastPathUnavailable):
            DirectDelivery(nc)
        assert await round_trip(nc, f"{unique_prefix()}.off") == [b"plain", b"lean", b"with headers"]
    finally:
        await nc.close()


async def test_a_client_of_another_shape_keeps_nats_pys_public_paths_with_a_warning(
        nats_server: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    nc = await connect_reshaped(nats_server.url)
    try:
        with caplog.at_level(logging.WARNING, logger="raaf.nats"):
            assert fastpaths.install(nc, parser=True, direct=True, lean_publish=True) == fastpaths.FastPaths()
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert all(f"{path!r} is off" in warned for path in ("parser", "direct", "lean_publish")), warned
        assert "_process_msg(sid, subject, reply, data, headers)" in warned and "_flush_pending" in warned
        assert fastpaths.active(nc) == fastpaths.FastPaths()
        assert type(nc._ps) is OtherParser and "_process_msg" not in vars(nc)
        with pytest.raises(fastpaths.FastPathUnavailable):
            fastpaths.routes(nc)
        assert not fastpaths.LeanPublish(nc).lean
        assert await round_trip(nc, f"{unique_prefix()}.reshaped") == [b"plain", b"lean", b"with headers"]
    finally:
        await nc.close()


def test_an_object_without_the_private_attributes_is_refused_every_path() -> None:
    class PublicOnly:
        """Has none of nats-py's private attributes."""

        stats: dict[str, int] = {}

    client: Any = PublicOnly()
    assert fastpaths.install(client, parser=True, direct=True, lean_publish=True) == fastpaths.FastPaths()
    assert not hasattr(client, "_process_msg")
