"""No-op jobs per second (enqueue, process) and pickup latency: raaf beside arq and saq, same Redis, same run.

Each system gets a fresh Valkey database on one server (AOF, fsync every second), one worker process with the
same concurrency, and the same producer (``--producers`` tasks enqueueing at once). Processing is timed inside
the worker, from its first job starting to its last finishing, so start-up is not counted. Pickup latency is
from the producer's enqueue call to the handler starting, one job at a time on an idle worker.

    python bench/bench_jobs.py [--jobs 20000] [--concurrency 50] [--producers 100] [--latency-jobs 300]
                               [--no-process]

``--no-process`` skips the process round (arq and saq take most of the run there) for a short run of enqueue
and pickup. The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import cpu_seconds  # noqa: E402
from shared.devstack.servers import NatsServer, ValkeyServer  # noqa: E402

SYSTEMS = ("raaf", "arq", "saq")
# arq polls its queue (default every 0.5 s); give it a fast poll so it is measured at its best, not its default.
ARQ_POLL_DELAY = 0.01
GOALS = {"process": 3.0, "enqueue": 4.0}


# ---- the worker processes (one per system and phase) -----------------------------------------------------------


class Recorder:
    """Counts handler calls; records the first start, last finish and each job's pickup latency."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.pickups: list[float] = []
        self.done = asyncio.Event()

    def started(self, sent: float | None) -> None:
        now = time.time()
        if not self.first:
            self.first = time.perf_counter()
        if sent is not None:
            self.pickups.append(now - sent)

    def finished(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.last = time.perf_counter()
            self.done.set()

    def report(self) -> dict[str, Any]:
        return {"count": self.count, "elapsed": self.last - self.first, "pickups": self.pickups}


async def worker_raaf(redis_url: str, nats_url: str, expected: int, concurrency: int) -> Recorder:
    from raaf.jobs import BackgroundProcessor

    rec = Recorder(expected)
    processor = BackgroundProcessor(redis_url, nats_url=nats_url, workers=concurrency, queue_name="bench")

    @processor.handle_job("noop")
    async def noop(data: Any) -> None:
        rec.started(data.get("t") if isinstance(data, dict) else None)
        rec.finished()

    await processor.start()
    print("READY", flush=True)
    await rec.done.wait()
    await asyncio.sleep(0.2)  # let the last outcomes be written before stopping
    await processor.stop()
    return rec


async def worker_arq(redis_url: str, nats_url: str, expected: int, concurrency: int) -> Recorder:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    rec = Recorder(expected)

    async def noop(ctx: dict[str, Any], t: float | None = None) -> None:
        rec.started(t)
        rec.finished()

    worker = Worker([func(noop, name="noop")], redis_settings=RedisSettings.from_dsn(redis_url),
                    max_jobs=concurrency, handle_signals=False, log_results=False, poll_delay=ARQ_POLL_DELAY)
    task = asyncio.create_task(worker.async_run())
    print("READY", flush=True)
    await rec.done.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    await worker.close()
    return rec


async def worker_saq(redis_url: str, nats_url: str, expected: int, concurrency: int) -> Recorder:
    from saq import Queue, Worker

    rec = Recorder(expected)

    async def noop(ctx: Any, *, t: float | None = None) -> None:
        rec.started(t)
        rec.finished()

    queue = Queue.from_url(redis_url, name="bench")
    worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency)
    task = asyncio.create_task(worker.start())
    print("READY", flush=True)
    await rec.done.wait()
    await asyncio.sleep(0.2)
    await worker.stop()
    task.cancel()
    return rec


def run_worker(system: str, redis_url: str, nats_url: str, expected: int, concurrency: int) -> None:
    workers = {"raaf": worker_raaf, "arq": worker_arq, "saq": worker_saq}
    rec = asyncio.run(workers[system](redis_url, nats_url, expected, concurrency))
    print("RESULT " + json.dumps(rec.report()), flush=True)


# ---- producers (in the bench process) --------------------------------------------------------------------------


class Producer:
    """Enqueues ``noop`` jobs with one system's client."""

    def __init__(self, system: str, redis_url: str, nats_url: str) -> None:
        self.system = system
        self.redis_url = redis_url
        self.nats_url = nats_url
        self.client: Any = None

    async def open(self) -> None:
        if self.system == "raaf":
            from raaf.jobs import BackgroundProcessor

            self.client = BackgroundProcessor(self.redis_url, nats_url=self.nats_url, queue_name="bench",
                                              limits=_limits())
        elif self.system == "arq":
            from arq import create_pool
            from arq.connections import RedisSettings

            self.client = await create_pool(RedisSettings.from_dsn(self.redis_url))
        else:
            from saq import Queue

            self.client = Queue.from_url(self.redis_url, name="bench")
            await self.client.connect()

    async def enqueue(self, sent: float | None = None) -> None:
        data = {"t": sent} if sent is not None else {}
        if self.system == "raaf":
            await self.client.enqueue_job("noop", data)
        elif self.system == "arq":
            await self.client.enqueue_job("noop", **data)
        else:
            await self.client.enqueue("noop", **data)

    async def close(self) -> None:
        if self.system == "raaf":
            await self.client.stop()
        elif self.system == "arq":
            await self.client.aclose()
        else:
            await self.client.disconnect()


def _limits() -> Any:
    from raaf.jobs import JobLimits

    # The producer runs before any worker registered "noop"; the bench is not about type checks.
    return JobLimits(require_known_type=False)


async def produce(producer: Producer, jobs: int, producers: int) -> float:
    """Enqueue ``jobs`` with ``producers`` concurrent tasks; returns jobs per second."""
    per_task, extra = divmod(jobs, producers)

    async def task(n: int) -> None:
        for _ in range(n):
            await producer.enqueue()

    started = time.perf_counter()
    await asyncio.gather(*(task(per_task + (1 if i < extra else 0)) for i in range(producers)))
    return jobs / (time.perf_counter() - started)


async def flush(redis_url: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


class WorkerProcess:
    def __init__(self, system: str, redis_url: str, nats_url: str, expected: int, concurrency: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_worker", system, redis_url, nats_url, str(expected), str(concurrency)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY"):
                return
        raise RuntimeError("worker exited before it was ready")

    def result(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                self.proc.wait(30)
                return dict(json.loads(line[7:]))
            if time.monotonic() > deadline:
                break
        self.proc.kill()
        raise RuntimeError("worker gave no result")


async def bench_system(system: str, redis_url: str, nats_url: str, args: argparse.Namespace,
                       servers: dict[str, int]) -> dict[str, float]:
    producer = Producer(system, redis_url, nats_url)
    await producer.open()
    try:
        # Throughput: enqueue everything first, then let one worker drain it. CPU per job of the producer and
        # of the servers is a figure of its own: on a busy machine the rate follows the share of a core each
        # process gets, the CPU it needs does not.
        pids = {"producer": os.getpid(), **servers}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        enqueue_rate = await produce(producer, args.jobs, args.producers)
        cpu = {name: (cpu_seconds(pid) - before[name]) / args.jobs * 1e6 for name, pid in pids.items()}
        process_rate = float("nan")
        if not args.no_process:
            worker = WorkerProcess(system, redis_url, nats_url, args.jobs, args.concurrency)
            worker.wait_ready()
            processed = await asyncio.to_thread(worker.result, 600)
            process_rate = processed["count"] / processed["elapsed"]
        else:  # the pickup round starts from an empty queue either way
            await flush(redis_url)

        # Pickup latency: one job at a time on an idle worker.
        worker = WorkerProcess(system, redis_url, nats_url, args.latency_jobs, args.concurrency)
        worker.wait_ready()
        await asyncio.sleep(1.0)
        for _ in range(args.latency_jobs):
            await producer.enqueue(sent=time.time())
            await asyncio.sleep(args.latency_gap)
        latency = await asyncio.to_thread(worker.result, 120)
    finally:
        await producer.close()
    pickups = sorted(latency["pickups"])
    print(system, "slowest pickups (ms):", [round(p * 1000, 1) for p in pickups[-8:]], file=sys.stderr)
    return {
        "enqueue": enqueue_rate,
        "enqueue_cpu_us": sum(cpu.values()),
        **{f"enqueue_cpu_us_{name}": us for name, us in cpu.items()},
        "process": process_rate,
        "pickup_p50_ms": pickups[len(pickups) // 2] * 1000,
        "pickup_p99_ms": pickups[min(len(pickups) - 1, int(len(pickups) * 0.99))] * 1000,
    }


async def main(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        valkey = ValkeyServer(Path(tmp) / "valkey")
        nats = NatsServer(Path(tmp) / "nats")
        valkey.start()
        nats.start()
        assert valkey.proc is not None and nats.proc is not None
        servers = {"valkey": valkey.proc.pid, "nats": nats.proc.pid}
        try:
            results: dict[str, dict[str, float]] = {}
            for db, system in enumerate(SYSTEMS, start=1):
                url = f"redis://{valkey.host}:{valkey.port}/{db}"
                print(f"... {system}", file=sys.stderr, flush=True)
                results[system] = await bench_system(system, url, nats.url, args, servers)
        finally:
            nats.stop()
            valkey.stop()
    report(results, args, (load_before, os.getloadavg()[0]))
    return 0


def report(results: dict[str, dict[str, float]], args: argparse.Namespace, load: tuple[float, float]) -> None:
    ours = results["raaf"]
    print(f"no-op jobs: {args.jobs} jobs, one worker process each with concurrency {args.concurrency}, "
          f"{args.producers} concurrent producers; pickup over {args.latency_jobs} jobs, one at a time; "
          f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end")
    print(f"{'':22}{'raaf':>12}{'arq':>12}{'saq':>12}{'raaf/arq':>10}{'raaf/saq':>10}  goal")
    for key, label in (("enqueue", "enqueue (jobs/s)"), ("process", "process (jobs/s)")):
        row = [results[s][key] for s in SYSTEMS]
        if args.no_process and key == "process":
            continue
        goal = f">= {GOALS[key]:g}x saq" if key == "enqueue" else f">= {GOALS[key]:g}x arq and saq"
        print(f"{label:22}{row[0]:12.0f}{row[1]:12.0f}{row[2]:12.0f}{row[0] / row[1]:9.1f}x{row[0] / row[2]:9.1f}x"
              f"  {goal}")
    row = [results[s]["enqueue_cpu_us"] for s in SYSTEMS]
    print(f"{'enqueue CPU (us/job)':22}{row[0]:12.0f}{row[1]:12.0f}{row[2]:12.0f}{row[1] / row[0]:9.1f}x"
          f"{row[2] / row[0]:9.1f}x  producer + valkey + nats-server (arq/raaf, saq/raaf)")
    for system in SYSTEMS:
        parts = ", ".join(f"{name} {results[system][f'enqueue_cpu_us_{name}']:.0f}"
                          for name in ("producer", "valkey", "nats"))
        print(f"{'':22}{system}: {parts}")
    for key, label in (("pickup_p50_ms", "pickup p50 (ms)"), ("pickup_p99_ms", "pickup p99 (ms)")):
        row = [results[s][key] for s in SYSTEMS]
        goal = "<= saq" if key == "pickup_p99_ms" else ""
        print(f"{label:22}{row[0]:12.2f}{row[1]:12.2f}{row[2]:12.2f}{'':20}  {goal}")
    met = ((args.no_process
            or ours["process"] >= GOALS["process"] * max(results["arq"]["process"], results["saq"]["process"]))
           and ours["enqueue"] >= GOALS["enqueue"] * results["saq"]["enqueue"]
           and ours["pickup_p99_ms"] <= results["saq"]["pickup_p99_ms"])
    print("goals met" if met else "GOALS NOT MET")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per throughput round (20000)")
    parser.add_argument("--concurrency", type=int, default=50, help="jobs at once in each worker (50)")
    parser.add_argument("--producers", type=int, default=100, help="concurrent enqueueing tasks (100)")
    parser.add_argument("--latency-jobs", type=int, default=300, help="jobs in the pickup round (300)")
    parser.add_argument("--latency-gap", type=float, default=0.01, help="seconds between pickup jobs (0.01)")
    parser.add_argument("--no-process", action="store_true", help="skip the process round (a short run)")
    return parser.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _, _, system, redis_url, nats_url, expected, concurrency = sys.argv
        run_worker(system, redis_url, nats_url, int(expected), int(concurrency))
    else:
        sys.exit(asyncio.run(main(parse())))
