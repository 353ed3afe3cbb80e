"""Gateway benchmarks, each figure beside a plain aiohttp WebSocket server measured in the same run.

1. memory: RSS per idle connection at N connections (default 10,000), without compression and with
   permessage-deflate after traffic (each client sends one compressed message and gets a 1 KiB broadcast).
2. fanout: one ~100-byte message published on NATS to N subscribers of one channel: time until the
   last subscriber has it (NATS hop included), median over rounds.
3. streams: S clients (default 2,000), each on its own channel fed at R messages/s (default 50), the
   streams spread over --phases phases of the interval (default 10; 1 = all in step): NATS-to-socket latency
   percentiles and CPU per message.

Run: ``.venv/bin/python bench/bench_gateway.py [--only memory|fanout|streams] [--connections N] [--loops L]``.
Servers and clients are separate processes; the machine's CPUs are shared by all of them. Both servers run on
the same event loop (``--loops uvloop,asyncio`` measures each); the load generators (the client process and
the publisher) run on uvloop where installed.
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

from bench.raw_nats import TickPublisher  # noqa: E402
from proto.subjects import Subjects  # noqa: E402
from shared.devstack.servers import NatsServer, die_with_parent, free_port  # noqa: E402
from shared.service.eventloop import EVENT_LOOPS, resolve, run  # noqa: E402

PREFIX = "bench"
CLIENT = [sys.executable, str(ROOT / "bench" / "gateway_client.py")]
LOAD_LOOP = resolve("auto")  # the client process, the publisher and this process


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU time of a process so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    return sum(cpu_times(pid))


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


async def start_server(kind: str, nats_url: str, compress: bool, loop: str) -> Server:
    """The gateway (``kind="gateway"``) or the plain aiohttp server, on event loop ``loop``."""
    port = free_port()
    if kind == "gateway":
        env = {**os.environ, "RAAF_EVENT_LOOP": loop, "NATS_URL": nats_url, "WEBSOCKET_HOST": "127.0.0.1",
               "WEBSOCKET_PORT": str(port),
               "RAAF_PREFIX": PREFIX, "WEBSOCKET_MAX_CONNECTIONS": "50000", "WEBSOCKET_RATE_LIMIT": "0",
               "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",  # every client is 127.0.0.1 here
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
                                                env={**os.environ, "RAAF_EVENT_LOOP": loop},
                                                stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == f"ready {loop}".encode(), line
    return Server("plain aiohttp", proc, port, "plain.channel.{}", "plain.broadcast")


class Clients:
    """The client process; its stdout is a stream of JSON events."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: object) -> Clients:
        proc = await asyncio.create_subprocess_exec(*CLIENT, *map(str, args), stdout=asyncio.subprocess.PIPE,
                                                    env={**os.environ, "RAAF_EVENT_LOOP": LOAD_LOOP},
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

async def memory(nats_url: str, n: int, loop: str) -> list[tuple[str, float]]:
    results = []
    nc = await nats.connect(nats_url)
    notice = json.dumps({"type": "notice", "text": "all systems nominal; " * 50}).encode()  # ~1 KiB
    for compress in (False, True):
        for kind in ("gateway", "plain"):
            server = await start_server(kind, nats_url, compress, loop)
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

async def fanout(nats_url: str, n: int, rounds: int, loop: str, kinds: tuple[str, ...] = ("gateway", "plain")
                 ) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    nc = await nats.connect(nats_url)
    for kind in kinds:
        server = await start_server(kind, nats_url, False, loop)
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

@dataclass
class Window:
    """What the servers and load generators spent while the clients measured."""

    server: tuple[float, float] = (0.0, 0.0)  # user, system seconds
    load: tuple[float, float] = (0.0, 0.0)  # the client process and this one (the publisher)
    wall: float = 0.0


async def measured_window(server: Server, clients: Clients) -> tuple[dict[str, object], Window]:
    """Wait for the client's measuring window and take the CPU times at its start and end."""
    def sample() -> tuple[tuple[float, float], tuple[float, float], float]:
        load = [cpu_times(clients.proc.pid), cpu_times(os.getpid())]
        return cpu_times(server.proc.pid), (load[0][0] + load[1][0], load[0][1] + load[1][1]), time.monotonic()

    await clients.event("measuring")
    start = sample()
    await clients.event("measured")
    end = sample()
    window = Window(server=(end[0][0] - start[0][0], end[0][1] - start[0][1]),
                    load=(end[1][0] - start[1][0], end[1][1] - start[1][1]), wall=end[2] - start[2])
    return await clients.event("latency"), window


def per_message(times: tuple[float, float], count: float) -> str:
    user, system = (t / max(1.0, count) * 1e6 for t in times)
    return f"{user + system:.1f} us (user {user:.1f} + kernel {system:.1f})"


async def streams(nats_url: str, n: int, rate: float, seconds: float, loop: str, phases: int
                  ) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for kind in ("gateway", "plain"):
        server = await start_server(kind, nats_url, False, loop)
        clients = await Clients.start("streams", server.port, n, seconds)
        await clients.event("ready")
        subjects = [server.channel_subject.format(f"s{i}") for i in range(n)]
        heads = [f'{{"type":"message","channel":"s{i}","data":{{"t":'.encode() for i in range(n)]
        tail = b',"pad":"' + b"x" * 40 + b'"}}'
        # Stream i ticks at phase i modulo `phases` of the interval: independent streams do not tick in step.
        publisher = await TickPublisher.connect(nats_url, subjects, heads, tail, groups=phases)
        measuring = asyncio.create_task(measured_window(server, clients))
        interval = 1.0 / rate / phases
        started = next_tick = time.monotonic()
        late_ticks = 0
        group = 0
        while not measuring.done() and time.monotonic() - started < seconds + 120:
            # One write per phase group, stamped as it is built: the stamp is the moment it goes to nats-server.
            publisher.publish_tick(str(time.monotonic_ns()).encode(), group)
            group = (group + 1) % phases
            next_tick += interval
            delay = next_tick - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_ticks += 1
                await asyncio.sleep(0)
        event, window = await measuring
        publisher.close()
        received = float(str(event["received"]))
        expected = n * rate * window.wall
        keeping_up = received >= 0.95 * expected
        # While saturated, latency grows for as long as the run lasts: the figures describe this run only.
        state = "keeping up" if keeping_up else "SATURATED"
        result = {k: float(str(event[k])) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}
        result.update(delivered=received / expected, cpu_share=sum(window.server) / window.wall,
                      cpu_us=sum(window.server) / max(1.0, received) * 1e6)
        results[server.name] = result
        print(f"  {server.name:<15} {n} streams x {rate:g} msg/s: p50 {result['p50_ms']:.1f} ms, "
              f"p90 {result['p90_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms; "
              f"{received:.0f} of {expected:.0f} delivered while measuring ({state}; publisher late on "
              f"{late_ticks} ticks)\n"
              f"  {'':<15} server: {result['cpu_share']:.0%} of a core, {per_message(window.server, received)} per "
              f"message delivered; load generators: {sum(window.load) / window.wall:.0%} of a core, "
              f"{per_message(window.load, received)}", flush=True)
        await clients.stop()
        await server.stop()
    return results


async def run_modes(args: argparse.Namespace, nats_url: str, loop: str) -> None:
    if args.only in (None, "memory"):
        print(f"[{loop}] memory per idle connection at {args.connections} connections "
              "(goal: <= 16 KiB plain, <= 40 KiB with deflate after traffic)", flush=True)
        await memory(nats_url, args.connections, loop)
    if args.only in (None, "fanout"):
        print(f"[{loop}] fan-out to {args.connections} subscribers, NATS hop included "
              "(goal: faster than the plain server's send loop)", flush=True)
        fan = await fanout(nats_url, args.connections, args.rounds, loop)
        ratio = fan["plain aiohttp"]["last_median"] / fan["gateway"]["last_median"]
        print(f"  gateway is {ratio:.2f}x the plain server's speed to the last subscriber", flush=True)
    if args.only in (None, "streams"):
        for count in (int(c) for c in args.streams.split(",")):
            print(f"[{loop}] {count} per-client streams at {args.rate:g} msg/s in {args.phases} phases "
                  f"(goal at 2000: p99 NATS-to-socket <= 20 ms); load average {os.getloadavg()[0]:.2f}", flush=True)
            await streams(nats_url, count, args.rate, args.seconds, loop, args.phases)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("memory", "fanout", "streams"))
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections / fan-out subscribers")
    parser.add_argument("--rounds", type=int, default=20, help="fan-out rounds")
    parser.add_argument("--streams", default="2000", help="per-client streams; a comma list runs each (500,1000,2000)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second per stream")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure the streams")
    parser.add_argument("--phases", type=int, default=10,
                        help="streams tick in this many phases of the interval (1: all in step, one burst per tick)")
    parser.add_argument("--loops", default="auto",
                        help="event loop of both servers; a comma list measures each (uvloop,asyncio)")
    args = parser.parse_args()
    unknown = [loop for loop in args.loops.split(",") if loop not in EVENT_LOOPS]
    if unknown:
        parser.error(f"unknown event loop {unknown[0]!r}; expected {', '.join(EVENT_LOOPS)}")
    loops = [resolve(loop) for loop in args.loops.split(",")]
    if args.phases < 1:
        parser.error("--phases must be at least 1")
    limit = raise_fd_limit()
    if limit < args.connections + 1000:
        print(f"warning: the open-files limit is {limit}; fewer connections than asked may open", flush=True)
    print(f"bench_gateway: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, fd limit {limit}; servers on "
          f"{' then '.join(loops)}, load generators on {LOAD_LOOP}; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="raaf-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        server.start()
        try:
            for loop in loops:
                await run_modes(args, server.url, loop)
        finally:
            server.stop()


if __name__ == "__main__":
    run(main(), LOAD_LOOP)
