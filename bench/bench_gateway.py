"""Gateway benchmarks, each figure beside a plain aiohttp WebSocket server measured in the same run.

1. memory: RSS per idle connection at N connections (default 10,000), without compression and with
   permessage-deflate after traffic (each client sends one compressed message and gets a 1 KiB broadcast).
2. fanout: one ~100-byte message published on NATS to N subscribers of one channel: time until the
   last subscriber has it (NATS hop included), median over rounds.
3. streams: S clients (default 2,000), each on its own channel fed at R messages/s (default 50):
   NATS-to-socket latency percentiles.

Run: ``.venv/bin/python bench/bench_gateway.py [--only memory|fanout|streams] [--connections N]``.
Servers and clients are separate processes; the machine's CPUs are shared by all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proto.subjects import Subjects  # noqa: E402
from shared.localstack import NatsServer, die_with_parent, free_port  # noqa: E402

PREFIX = "bench"
CLIENT = [sys.executable, str(ROOT / "bench" / "gateway_client.py")]


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class Server:
    name: str  # "gateway" or "plain aiohttp"
    proc: asyncio.subprocess.Process
    port: int
    channel_subject: str  # format with the channel name
    broadcast_subject: str

    @property
    def rss(self) -> int:
        return rss_kib(self.proc.pid)

    @property
    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_server(kind: str, nats_url: str, compress: bool) -> Server:
    port = free_port()
    if kind == "gateway":
        env = {**os.environ, "NATS_URL": nats_url, "WEBSOCKET_HOST": "127.0.0.1", "WEBSOCKET_PORT": str(port),
               "RAAF_PREFIX": PREFIX, "WEBSOCKET_MAX_CONNECTIONS": "50000", "WEBSOCKET_RATE_LIMIT": "0",
               "WEBSOCKET_IDLE_TIMEOUT": "0", "LOG_LEVEL": "warning",
               "WEBSOCKET_ENABLE_COMPRESSION": "true" if compress else "false"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.gateway", cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent)
        subjects = Subjects(PREFIX)
        server = Server("gateway", proc, port, f"{PREFIX}.channel.{{}}", subjects.gateway_broadcast)
        for _ in range(600):
            if await asyncio.to_thread(ready, f"http://127.0.0.1:{port}/readyz"):
                return server
            await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not become ready")
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "bench" / "plain_ws_server.py"),
                                                str(port), nats_url, "1" if compress else "0",
                                                stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready", line
    return Server("plain aiohttp", proc, port, "plain.channel.{}", "plain.broadcast")


class Clients:
    """The client process; its stdout is a stream of JSON events."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: object) -> Clients:
        proc = await asyncio.create_subprocess_exec(*CLIENT, *map(str, args), stdout=asyncio.subprocess.PIPE,
                                                    preexec_fn=die_with_parent)
        return cls(proc)

    async def event(self, name: str, timeout: float = 300) -> dict[str, object]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"client process ended while waiting for {name!r}")
            event: dict[str, object] = json.loads(line)
            if event["event"] == name:
                return event

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# ---- 1. memory per idle connection ----------------------------------------------------------------

async def memory(nats_url: str, n: int) -> list[tuple[str, float]]:
    results = []
    nc = await nats.connect(nats_url)
    notice = json.dumps({"type": "notice", "text": "all systems nominal; " * 50}).encode()  # ~1 KiB
    for compress in (False, True):
        for kind in ("gateway", "plain"):
            server = await start_server(kind, nats_url, compress)
            await asyncio.sleep(1.0)
            before = server.rss
            args = ["idle", server.port, n] + (["--deflate", "--traffic"] if compress else [])
            clients = await Clients.start(*args)
            ready = await clients.event("ready")
            if compress:
                await nc.publish(server.broadcast_subject, notice)
                await nc.flush()
            await asyncio.sleep(4.0)
            after = server.rss
            per_conn = (after - before) * 1024 / int(str(ready["connections"]))
            label = f"{server.name}, {'deflate after traffic' if compress else 'no compression'}"
            results.append((label, per_conn))
            print(f"  {label:<45} {per_conn / 1024:7.1f} KiB/connection "
                  f"(RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB)", flush=True)
            await clients.stop()
            await server.stop()
    await nc.close()
    return results


# ---- 2. fan-out to N subscribers --------------------------------------------------------------------

async def fanout(nats_url: str, n: int, rounds: int, kinds: tuple[str, ...] = ("gateway", "plain")
                 ) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    nc = await nats.connect(nats_url)
    for kind in kinds:
        server = await start_server(kind, nats_url, compress=False)
        clients = await Clients.start("fanout", server.port, n, "bench", rounds)
        await clients.event("ready")
        subject = server.channel_subject.format("bench")
        lasts, firsts = [], []
        cpu_used = 0.0
        for r in range(rounds + 2):
            cpu_before = server.cpu
            data = json.dumps({"round": r, "t": time.monotonic_ns(), "pad": "x" * 8}, separators=(",", ":")).encode()
            payload = b'{"type":"message","channel":"bench","data":' + data + b"}"
            await nc.publish(subject, payload)
            await nc.flush()
            event = await clients.event("round", timeout=60)
            if r >= 2:  # two warm-up rounds
                lasts.append(float(str(event["last_ms"])))
                firsts.append(float(str(event["first_ms"])))
                cpu_used += server.cpu - cpu_before
            await asyncio.sleep(0.2)
        size = len(payload)
        results[server.name] = {"last_median": statistics.median(lasts), "first_median": statistics.median(firsts),
                                "last_p90": sorted(lasts)[int(0.9 * len(lasts))], "bytes": size,
                                "cpu_ms": cpu_used * 1000 / rounds}
        print(f"  {server.name:<15} {size}-byte message to {n} subscribers: last one after "
              f"{results[server.name]['last_median']:.1f} ms (median of {rounds}; p90 "
              f"{results[server.name]['last_p90']:.1f} ms), first after "
              f"{results[server.name]['first_median']:.1f} ms; server CPU {results[server.name]['cpu_ms']:.0f} ms "
              "per fan-out", flush=True)
        await clients.stop()
        await server.stop()
    await nc.close()
    return results


# ---- 3. per-client streams --------------------------------------------------------------------------

async def streams(nats_url: str, n: int, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    nc = await nats.connect(nats_url, pending_size=64 * 1024 * 1024)
    for kind in ("gateway", "plain"):
        server = await start_server(kind, nats_url, compress=False)
        clients = await Clients.start("streams", server.port, n, seconds)
        await clients.event("ready")
        subjects = [server.channel_subject.format(f"s{i}") for i in range(n)]
        heads = [f'{{"type":"message","channel":"s{i}","data":{{"t":'.encode() for i in range(n)]
        tail = b',"pad":"' + b"x" * 40 + b'"}}'
        latency = asyncio.create_task(clients.event("latency", timeout=seconds + 120))
        interval = 1.0 / rate
        cpu_before = server.cpu
        started = next_tick = time.monotonic()
        published = 0
        late_ticks = 0
        while not latency.done() and time.monotonic() - started < seconds + 5:
            for subject, head in zip(subjects, heads, strict=True):
                await nc.publish(subject, head + str(time.monotonic_ns()).encode() + tail)
            published += n
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_ticks += 1
                await asyncio.sleep(0)
        event = await latency
        cpu_used, wall = server.cpu - cpu_before, time.monotonic() - started
        expected = n * rate * seconds
        keeping_up = float(str(event["received"])) >= 0.95 * expected
        # Per message only while the server keeps up; saturated, its share of a core says more.
        cpu_note = (f"server CPU {cpu_used / max(1, published) * 1e6:.1f} us per message" if keeping_up
                    else f"server saturated: {cpu_used / wall:.0%} of a core")
        results[server.name] = {k: float(str(event[k])) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
        results[server.name]["delivered"] = float(str(event["received"])) / expected
        results[server.name]["cpu_share"] = cpu_used / wall
        print(f"  {server.name:<15} {n} streams x {rate:g} msg/s: p50 {results[server.name]['p50_ms']:.1f} ms, "
              f"p90 {results[server.name]['p90_ms']:.1f} ms, p99 {results[server.name]['p99_ms']:.1f} ms, "
              f"max {results[server.name]['max_ms']:.1f} ms; {event['received']} of ~{expected:.0f} delivered "
              f"while measuring (publisher late on {late_ticks} ticks); {cpu_note}", flush=True)
        await clients.stop()
        await server.stop()
    await nc.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("memory", "fanout", "streams"))
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections / fan-out subscribers")
    parser.add_argument("--rounds", type=int, default=20, help="fan-out rounds")
    parser.add_argument("--streams", default="2000", help="per-client streams; a comma list runs each (500,1000,2000)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second per stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure the streams")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if limit < args.connections + 1000:
        print(f"warning: the open-files limit is {limit}; fewer connections than asked may open", flush=True)
    print(f"bench_gateway: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, fd limit {limit}", flush=True)
    with tempfile.TemporaryDirectory(prefix="raaf-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        try:
            if args.only in (None, "memory"):
                print(f"memory per idle connection at {args.connections} connections "
                      "(goal: <= 16 KiB plain, <= 40 KiB with deflate after traffic)", flush=True)
                await memory(server.url, args.connections)
            if args.only in (None, "fanout"):
                print(f"fan-out to {args.connections} subscribers, NATS hop included "
                      "(goal: faster than the plain server's send loop)", flush=True)
                fan = await fanout(server.url, args.connections, args.rounds)
                ratio = fan["plain aiohttp"]["last_median"] / fan["gateway"]["last_median"]
                print(f"  gateway is {ratio:.2f}x the plain server's speed to the last subscriber", flush=True)
            if args.only in (None, "streams"):
                for count in (int(c) for c in args.streams.split(",")):
                    print(f"{count} per-client streams at {args.rate:g} msg/s "
                          "(goal at 2000: p99 NATS-to-socket <= 20 ms)", flush=True)
                    await streams(server.url, count, args.rate, args.seconds)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
