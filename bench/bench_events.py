"""Emit -> wildcard listener events per second, beside raw nats-py publish -> subscribe, in the same run.

Usage: ``python bench/bench_events.py [--events N] [--rounds R]``. Starts its own nats-server -js (or uses
``NATS_URL``), runs every mode R times interleaved (so machine noise hits all alike), prints the median rate
of each and its ratio to the raw nats-py anchor. The goal: emit -> listener >= 0.9x raw.

Two rows are there to show where the emitter's speed comes from, not as anchors: the emitter with direct
delivery and the lean publish switched off (nats-py's own publish and callback subscription, as the anchor),
and the anchor's raw publish loop into a ``shared.nats.direct`` route (the receive-side bypass on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import nats
from nats.js.api import PubAck, StorageType, StreamConfig
from prometheus_client import CollectorRegistry

from proto.events import Event
from proto.subjects import Subjects
from raaf.events import EventEmitter
from shared.devstack.servers import NatsServer
from shared.events.settings import EventSettings
from shared.nats import fastpaths
from shared.nats.direct import DirectDelivery

DATA = {"user_id": "u1", "ip_address": "192.168.1.100", "n": 1}


async def raw_nats(url: str, events: int, *, decode: bool) -> float:
    """The anchor: nats-py publish of the JSON data -> an async callback on a wildcard subscription."""
    nc = await nats.connect(url)
    done = asyncio.Event()
    received = 0
    json_decode = msgspec.json.decode

    async def callback(msg: nats.aio.msg.Msg) -> None:
        nonlocal received
        if decode:
            json_decode(msg.data)
        received += 1
        if received == events:
            done.set()

    await nc.subscribe("rawbench.*", cb=callback)
    await nc.flush()
    encode = msgspec.json.encode
    started = time.perf_counter()
    for _ in range(events):
        await nc.publish("rawbench.login", encode(DATA))
    await done.wait()
    elapsed = time.perf_counter() - started
    await nc.close()
    return events / elapsed


async def raw_direct(url: str, events: int) -> float:
    """Not an anchor: the anchor's publish loop with the subscriber on shared.nats.direct's route (no Msg/queue/task).

    It shows what the receive-side bypass the emitter uses is worth on its own.
    """
    nc = await nats.connect(url)
    done = asyncio.Event()
    received = 0

    def route(subject: bytes, payload: bytes, headers: bytes | None) -> None:
        nonlocal received
        received += 1
        if received == events:
            done.set()

    if not fastpaths.install(nc, direct=True).direct:
        raise SystemExit("this nats-py does not have the shape the direct path was written against")
    await DirectDelivery(nc).subscribe_messages("rawdirect.*", route)
    await nc.flush()
    encode = msgspec.json.encode
    started = time.perf_counter()
    for _ in range(events):
        await nc.publish("rawdirect.login", encode(DATA))
    await done.wait()
    elapsed = time.perf_counter() - started
    await nc.close()
    return events / elapsed


async def raw_jetstream(url: str, events: int) -> float:
    """The anchor of confirmed emits: nats-py's pipelined JetStream publish_async (acked, Msg-Id) -> subscribe."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    stream = f"RAWBENCH{os.getpid()}{time.monotonic_ns() % 100000}"
    subject = f"{stream.lower()}.login"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.*"], storage=StorageType.MEMORY))
    done = asyncio.Event()
    received = 0

    async def callback(msg: nats.aio.msg.Msg) -> None:
        nonlocal received
        received += 1
        if received == events:
            done.set()

    await nc.subscribe(f"{stream.lower()}.*", cb=callback)
    await nc.flush()
    encode = msgspec.json.encode
    started = time.perf_counter()
    window: list[asyncio.Future[PubAck]] = []
    for n in range(events):
        window.append(await js.publish_async(subject, encode(DATA), headers={"Nats-Msg-Id": f"m{n}"}))
        if len(window) >= 2000:
            await asyncio.gather(*window)
            window.clear()
    await asyncio.gather(*window)
    await done.wait()
    elapsed = time.perf_counter() - started
    await js.delete_stream(stream)
    await nc.close()
    return events / elapsed


async def emitter_path(url: str, events: int, *, history: bool, confirm: bool, use_async: bool,
                       nats_py_paths: bool = False) -> float:
    """EventEmitter.emit -> a listener on ``bench.*`` (a sync callback, as most listeners are).

    ``nats_py_paths``: direct delivery and the lean publish off (EVENTS_DIRECT_DELIVERY / EVENTS_LEAN_PUBLISH).
    """
    prefix = f"bench{os.getpid()}{int(time.time() * 1000) % 100000}"
    settings = EventSettings.from_env({"NATS_URL": url, "RAAF_PREFIX": prefix, "EVENTS_STORAGE": "memory",
                                       "EVENTS_HISTORY_SIZE": str(events), "EVENTS_MAX_PENDING_EMITS": "4000",
                                       "EVENTS_HISTORY_MAX_BYTES": str(max(64 << 20, events * 512))})
    emitter = EventEmitter(enable_history=history, confirm=confirm, settings=settings, registry=CollectorRegistry(),
                           direct_delivery=not nats_py_paths, lean_publish=not nats_py_paths)
    await emitter.connect()
    done = asyncio.Event()
    received = 0

    def listener(event: Event) -> None:
        nonlocal received
        received += 1
        if received == events:
            done.set()

    await emitter.on("bench.*", listener)
    started = time.perf_counter()
    if use_async:
        window: list[asyncio.Future[Event]] = []
        for _ in range(events):
            window.append(emitter.emit_async("bench.login", DATA))
            if len(window) >= 2000:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)
    else:
        emit = emitter.emit
        for _ in range(events):
            await emit("bench.login", DATA)
    await done.wait()
    elapsed = time.perf_counter() - started
    await emitter.close()
    if history:  # JetStream reserves each stream's bytes: give them back
        nc = await nats.connect(url)
        await nc.jetstream().delete_stream(Subjects(prefix).stream_name("events"))
        await nc.close()
    return events / elapsed


Mode = Callable[[str, int], Awaitable[float]]

MODES: dict[str, Mode] = {
    "raw nats-py publish -> subscribe (anchor)": lambda u, n: raw_nats(u, n, decode=False),
    "raw nats-py, JSON decoded in the callback": lambda u, n: raw_nats(u, n, decode=True),
    "emit -> listener, history off": lambda u, n: emitter_path(u, n, history=False, confirm=False,
                                                               use_async=False),
    "emit -> listener, history off, nats-py publish + delivery": lambda u, n: emitter_path(
        u, n, history=False, confirm=False, use_async=False, nats_py_paths=True),
    "raw nats-py publish -> direct route (not an anchor)": raw_direct,
    "emit -> listener, history on, confirm=False": lambda u, n: emitter_path(u, n, history=True, confirm=False,
                                                                             use_async=False),
    "raw nats-py JetStream publish_async (acked) -> subscribe": raw_jetstream,
    "emit_async -> listener, history on, confirmed": lambda u, n: emitter_path(u, n, history=True, confirm=True,
                                                                               use_async=True),
    "emit -> listener, history on, confirmed (awaited)": lambda u, n: emitter_path(u, n // 10, history=True,
                                                                                   confirm=True, use_async=False),
}


async def run(url: str, events: int, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {name: [] for name in MODES}
    for _ in range(rounds):
        for name, mode in MODES.items():
            results[name].append(await mode(url, events))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per run (100000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported (5)")
    args = parser.parse_args()
    server = None
    url = os.environ.get("NATS_URL", "")
    if not url:
        server = NatsServer(Path(tempfile.mkdtemp(prefix="raaf-bench-events-")))
        server.start()
        url = server.url
    try:
        results = asyncio.run(run(url, args.events, args.rounds))
    finally:
        if server is not None:
            server.stop()
    anchor = statistics.median(results[next(iter(MODES))])
    best_anchor = max(results[next(iter(MODES))])
    print(f"events per run: {args.events}, rounds: {args.rounds}; ratio = rate / raw nats-py anchor "
          "(median of the rounds, and best round beside best round)")
    for name, rates in results.items():
        rate = statistics.median(rates)
        print(f"  {name:<60} {rate:>10,.0f} events/s   {rate / anchor:5.2f}x   "
              f"(best {max(rates):>9,.0f}  {max(rates) / best_anchor:5.2f}x)")
    fast = statistics.median(results["emit -> listener, history off"]) / anchor
    print(f"goal: emit -> listener >= 0.90x raw nats-py: {'met' if fast >= 0.9 else 'NOT met'} ({fast:.2f}x)")
    direct = (statistics.median(results["emit -> listener, history off"])
              / statistics.median(results["raw nats-py publish -> direct route (not an anchor)"]))
    print(f"emit -> listener / raw publish -> direct route (same receive bypass, no envelope): {direct:.2f}x")
    confirmed = (statistics.median(results["emit_async -> listener, history on, confirmed"])
                 / statistics.median(results["raw nats-py JetStream publish_async (acked) -> subscribe"]))
    print(f"confirmed emit_async / raw nats-py JetStream publish_async: {confirmed:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
