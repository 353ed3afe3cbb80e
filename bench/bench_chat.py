"""Chat room fan-out beside channel fan-out, on one gateway in the same run.

One message to N members of one chat room (default 1,000) and one message to N subscribers of one channel: each
member's latency from the publish to its socket (p50, p99, the last member), and the gateway's CPU per
delivered message. The room message is appended to the room's feed in JetStream (``<p>.chat.feed.<room>.msg``,
a ``user_message``), the channel message published on core NATS: the room's figure includes the JetStream
store and its ordered-consumer delivery, which a channel does not have. The chat service is stopped once the
members have joined, so only the gateway works while the rounds run.

Run: ``.venv/bin/python bench/bench_chat.py [--members 1000] [--rounds 20] [--gateway-root PATH]``;
``--gateway-root`` runs the gateway from another checkout (e.g. a worktree of ``main``, for a before figure),
everything else from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_gateway import Clients, cpu_times, raise_fd_limit, ready  # noqa: E402
from proto.chat import UserMessage, chat_encoder  # noqa: E402
from proto.subjects import Subjects  # noqa: E402
from shared.clients.chat import ChatClient  # noqa: E402
from shared.devstack.servers import NatsServer, die_with_parent, free_port  # noqa: E402

PREFIX = "benchchat"


def cpu_ns(pid: int) -> int:
    """CPU time of all a process's threads so far, in nanoseconds (the scheduler's count, not ticks)."""
    return sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir())


async def start(module: str, cwd: Path, env: dict[str, str], ready_url: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, cwd=cwd, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent)
    for _ in range(600):
        if await asyncio.to_thread(ready, ready_url):
            return proc
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{module} did not become ready")


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def one_kind(kind: str, nats_url: str, members: int, rounds: int, gateway_root: Path) -> dict[str, float]:
    prefix = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    subjects = Subjects(prefix)
    common = {"NATS_URL": nats_url, "RAAF_PREFIX": prefix, "LOG_LEVEL": "warning"}
    chat_port, gateway_port = free_port(), free_port()
    chat = await start("services.chat", ROOT, {**common, "HTTP_PORT": str(chat_port),
                                               "CHAT_MAX_PARTICIPANTS_PER_ROOM": str(members + 10),
                                               "CHAT_MAX_INFLIGHT_COMMANDS": "1024"},
                       f"http://127.0.0.1:{chat_port}/readyz")
    gateway = await start("services.gateway", gateway_root, {
        **common, "WEBSOCKET_HOST": "127.0.0.1", "WEBSOCKET_PORT": str(gateway_port),
        "WEBSOCKET_MAX_CONNECTIONS": "50000", "WEBSOCKET_RATE_LIMIT": "0", "WEBSOCKET_IDLE_TIMEOUT": "0",
        "WEBSOCKET_HEARTBEAT_INTERVAL": "0", "WEBSOCKET_ENABLE_COMPRESSION": "false"}, f"http://127.0.0.1:{gateway_port}/readyz")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        room = await ChatClient(nc, prefix=prefix).create_room("Bench", max_participants=members + 10)
        joined_at = time.monotonic()
        target = ["channel", "bench"] if kind == "channel" else ["room", "Bench"]
        clients = await Clients.start("members", gateway_port, members, *target)
        await clients.event("ready", timeout=900)
        join_s = time.monotonic() - joined_at
        await stop(chat)  # from here on only the gateway (and nats-server) work
        await asyncio.sleep(1.0)
        latencies: list[float] = []
        lasts: list[float] = []
        cpu = (0.0, 0.0)
        cpu_total = 0
        for r in range(rounds + 2):
            before, before_ns = cpu_times(gateway.pid), cpu_ns(gateway.pid)
            text = f"round={r} t={time.monotonic_ns()}"
            if kind == "channel":
                data = json.dumps({"text": text})
                await nc.publish(subjects.channel("bench"),
                                 f'{{"type":"message","channel":"bench","data":{data}}}'.encode())
            else:
                message = UserMessage(id=f"m{r}", room_id=room.id, user="bench", text=text, agent="assistant",
                                      count=r + 1, at=time.time())
                await js.publish(subjects.chat_feed_messages(room.id), chat_encoder.encode(message))
            event = await clients.event("round", timeout=120)
            after, after_ns = cpu_times(gateway.pid), cpu_ns(gateway.pid)
            if r >= 2:  # two warm-up rounds
                seen = [float(x) for x in event["latencies_ms"]]  # type: ignore[attr-defined]
                latencies += seen
                lasts.append(seen[-1])
                cpu = (cpu[0] + after[0] - before[0], cpu[1] + after[1] - before[1])
                cpu_total += after_ns - before_ns
            await asyncio.sleep(0.2)
        await clients.stop()
    finally:
        await nc.close()
        await stop(gateway)
        await stop(chat)
    latencies.sort()
    delivered = rounds * members
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "last": statistics.median(lasts), "user_us": cpu[0] * 1e6 / delivered,
            "sys_us": cpu[1] * 1e6 / delivered, "cpu_us": cpu_total / 1e3 / delivered, "join_s": join_s}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--gateway-root", type=Path, default=ROOT)
    parser.add_argument("--kinds", default="channel,room")
    args = parser.parse_args()
    raise_fd_limit()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; gateway from {args.gateway_root}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp))
        server.start()
        try:
            results = {}
            for kind in args.kinds.split(","):
                results[kind] = r = await one_kind(kind, server.url, args.members, args.rounds, args.gateway_root)
                print(f"  {kind:<8} one message to {args.members} members: p50 {r['p50']:.1f} ms, p99 "
                      f"{r['p99']:.1f} ms, last member {r['last']:.1f} ms (median of {args.rounds}); gateway CPU "
                      f"{r['user_us'] + r['sys_us']:.1f} us per delivered message (user {r['user_us']:.1f} + "
                      f"kernel {r['sys_us']:.1f}); joined in {r['join_s']:.1f} s", flush=True)
        finally:
            server.stop()
    if len(results) < 2:
        return
    room, channel = results["room"], results["channel"]
    print(f"room / channel: p50 {room['p50'] / channel['p50']:.2f}x, p99 {room['p99'] / channel['p99']:.2f}x, "
          f"last {room['last'] / channel['last']:.2f}x, CPU per delivered message "
          f"{room['cpu_us'] / max(1e-9, channel['cpu_us']):.2f}x; "
          f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
