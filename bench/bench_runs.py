"""Streamed runs through the whole platform beside the ``openai`` client straight to the mock, in the same run.

Usage: ``python bench/bench_runs.py [--streams N] [--tokens T] [--token-delay D] [--concurrent C] [--cancels K]
[--profile DIR] [--runner-env NAME=VALUE] [--workers W]`` (``--streams 0`` / ``--cancels 0`` skip those rounds).

Starts nats-server -js, the OpenAI mock (its own process, fixed token rate), one agent-runner and one gateway,
then measures, interleaving the two paths so machine noise hits both alike:

* time to first token (TTFT) and inter-token gaps of ``N`` sequential streams: ``openai`` -> gateway
  ``/v1/chat/completions`` -> NATS -> agent-runner -> ``openai`` -> mock, and back; the anchor is the same
  ``openai`` client streaming straight from the mock. Goal: added TTFT p50 <= 5 ms, p99 <= 20 ms; added
  inter-token p99 <= 2 ms.
* ``C`` concurrent streams (default 1,000) on the one agent-runner process, through the platform, beside
  ``C`` concurrent streams straight to the mock: all must complete; TTFT and gaps under load; CPU seconds per
  streamed token of every process (``/proc/<pid>/stat``), the platform's (runner + gateway + nats-server) beside
  the direct client's (goal <= 3x); with ``--profile`` a py-spy profile of the runner and the gateway.
* ``--workers W``: the agent-runner runs with ``RUN_WORKERS=W`` (a supervisor and W worker processes; their CPU
  is counted together as the agent-runner's). On 2 cores shared with the gateway, nats-server, the mock and this
  client, more workers cannot show a speed-up: the figures say what they cost or gain on this machine.
* cancel: ``K`` runs cancelled after their first token (REST cancel -> ``run_cancelled`` on the SSE stream).
  Goal: p99 <= 100 ms.

``--trace``: the runner and gateway trace every run (``OTEL_TRACES_SAMPLER=always_on``) and export over OTLP/HTTP
to a receiver this process runs (it decodes and counts the spans); without it tracing is off, as by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx2
import nats
import openai
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc_cpu import CpuMeter, Profile, tree_cpu_seconds  # noqa: E402
from proto.openai_compat import stream_frame_decoder  # noqa: E402
from proto.runs import RunAccepted, RunRequest  # noqa: E402
from proto.subjects import Subjects  # noqa: E402
from shared.clients.runs import RunClient  # noqa: E402
from shared.devstack.servers import NatsServer, free_port  # noqa: E402

decode_chunk = stream_frame_decoder.decode


@dataclass
class Timings:
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    failures: int = 0
    tokens: int = 0  # model tokens received (a chunk may carry several when the runner coalesces deltas)
    chunks: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # what failed streams answered


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(value: float) -> str:
    return f"{value * 1000:8.2f} ms"


async def one_stream(client: openai.AsyncOpenAI, model: str, prompt: str, into: Timings) -> None:
    started = time.perf_counter()
    last: float | None = None
    try:
        stream = await client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                      stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                now = time.perf_counter()
                if last is None:
                    into.ttft.append(now - started)
                else:
                    into.gaps.append(now - last)
                last = now
    except openai.APIError:
        into.failures += 1


def client_for(base_url: str, connections: int) -> openai.AsyncOpenAI:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=httpx2.Timeout(120, connect=30))
    return openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http)


async def sequential(direct: openai.AsyncOpenAI, platform: openai.AsyncOpenAI, prompt: str, streams: int
                     ) -> tuple[Timings, Timings]:
    anchor, ours = Timings(), Timings()
    for _ in range(3):  # warm both paths (connections, JIT-less caches, the runner's first client)
        await one_stream(direct, "gpt-4o-mini", prompt, Timings())
        await one_stream(platform, "assistant", prompt, Timings())
    for i in range(streams):
        pair: list[tuple[openai.AsyncOpenAI, str, Timings]] = [(direct, "gpt-4o-mini", anchor),
                                                               (platform, "assistant", ours)]
        for client, model, into in pair if i % 2 == 0 else reversed(pair):
            await one_stream(client, model, prompt, into)
    return anchor, ours


async def raw_stream(http: aiohttp.ClientSession, url: str, model: str, prompt: str, into: Timings) -> None:
    """One streamed completion read with aiohttp and msgspec: a client light enough that 1,000 of them in one
    process measure the servers, not the client (the ``openai`` client's per-chunk models would dominate)."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    started = time.perf_counter()
    last: float | None = None
    try:
        async with http.post(f"{url}/chat/completions", json=body) as resp:
            if resp.status != 200:
                into.failures += 1
                into.reasons[f"{resp.status} {(await resp.text())[:120]}"] += 1
                return
            last_line = b""
            async for line in resp.content:
                if not line.startswith(b"data: {"):
                    continue
                last_line = line
                if b'"error"' in line[:16]:
                    break
                chunk = decode_chunk(line[6:])
                content = chunk.choices[0].delta.content if chunk.choices else None
                if content:
                    now = time.perf_counter()
                    # Every token's gap counts: those that came in one chunk with the one before came 0 ms later.
                    count = max(1, len(content.split()))
                    if last is None:
                        into.ttft.append(now - started)
                        into.gaps.extend([0.0] * (count - 1))
                    else:
                        into.gaps.append(now - last)
                        into.gaps.extend([0.0] * (count - 1))
                    into.tokens += count
                    into.chunks += 1
                    last = now
            if last is None:  # answered 200, but the stream ended (or failed) before any text
                into.failures += 1
                into.reasons[f"200 without text: {last_line[:160].decode(errors='replace')}"] += 1
    except aiohttp.ClientError as exc:
        into.failures += 1
        into.reasons[type(exc).__name__] += 1


async def concurrent(url: str, model: str, prompt: str, count: int) -> tuple[Timings, float]:
    into = Timings()
    connector = aiohttp.TCPConnector(limit=count + 10)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(raw_stream(http, url, model, prompt, into) for _ in range(count)))
        return into, time.perf_counter() - started


async def cancels(gateway: str, count: int) -> list[float]:
    """Start a run (SSE), and after its first token time ``POST .../cancel`` until ``run_cancelled`` arrives."""
    took: list[float] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            body = {"agent": "assistant", "input": " ".join(["long"] * 400), "stream": True}
            async with http.post(f"{gateway}/v1/runs", json=body) as resp:
                run_id = None
                asked = 0.0
                async for line in resp.content:
                    if not line.startswith(b"data: "):
                        continue
                    event = json.loads(line[6:])
                    run_id = event["run_id"]
                    if event["type"] == "run_text_delta" and not asked:
                        asked = time.perf_counter()
                        async with http.post(f"{gateway}/v1/runs/{run_id}/cancel") as cancel:
                            assert cancel.status == 202, await cancel.text()
                    elif event["type"] == "run_cancelled":
                        took.append(time.perf_counter() - asked)
                        break
                    elif event["type"] in ("run_completed", "run_failed"):
                        raise RuntimeError(f"run ended with {event['type']} instead of being cancelled")
    return took


def start(module: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *module], env={**os.environ, **env}, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


async def wait_http(url: str, ok: Callable[[aiohttp.ClientResponse], Awaitable[bool]], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if await ok(resp):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not up within {timeout}s")


class SpanSink:
    """A local OTLP/HTTP trace receiver: decodes every export and counts its spans."""

    def __init__(self) -> None:
        self.port = free_port()
        self.spans = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.export)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def export(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        export = ExportTraceServiceRequest.FromString(await request.read())
        self.spans += sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans)
        return web.Response(content_type="application/x-protobuf")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    nats_server = NatsServer(work / "nats")
    nats_server.start()
    assert nats_server.proc is not None
    nats_pid = nats_server.proc.pid
    procs: list[subprocess.Popen[bytes]] = []
    sink = SpanSink()
    try:
        mock_port, runner_port, gateway_port = free_port(), free_port(), free_port()
        procs.append(start(["-m", "raaf.testing.openai_mock", "--port", str(mock_port), "--token-delay",
                            str(args.token_delay), "--no-record-requests"], {}, work / "mock.log"))
        mock = f"http://127.0.0.1:{mock_port}/v1"
        common = {"NATS_URL": nats_server.url, "RAAF_PREFIX": "bench", "LOG_LEVEL": "warning",
                  "HTTP_HOST": "127.0.0.1"}
        if args.trace:
            common |= {"OTEL_EXPORTER_OTLP_ENDPOINT": await sink.start(), "OTEL_TRACES_SAMPLER": "always_on"}
        procs.append(start(["-m", "services.agent_runner"], {
            **common, "HTTP_PORT": str(runner_port), "OPENAI_BASE_URL": mock, "ASYNC_POOL_SIZE": str(
                max(args.concurrent, args.starts, 20)), "ASYNC_QUEUE_SIZE": str(max(args.concurrent, args.starts)),
            "RUN_PROVIDER_MAX_CONNECTIONS": str(args.concurrent + 10), "STREAMING_TIMEOUT": "300",
            "RUN_WORKERS": str(args.workers),
            **dict(pair.split("=", 1) for pair in args.runner_env)},
            work / "runner.log"))
        procs.append(start(["-m", "services.gateway"], {
            **common, "WEBSOCKET_HOST": "127.0.0.1", "WEBSOCKET_PORT": str(gateway_port),
            "WEBSOCKET_MAX_CONNECTIONS": str(args.concurrent * 2),
            "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0",  # every stream comes from 127.0.0.1 here
            # A burst of 1,000 starts on a loaded 2-core machine can take longer than the default 5 s to be
            # accepted: measure how long, rather than count refusals.
            "GATEWAY_RUN_REQUEST_TIMEOUT": str(args.request_timeout)}, work / "gateway.log"))
        gateway = f"http://127.0.0.1:{gateway_port}"

        async def ready(resp: aiohttp.ClientResponse) -> bool:
            return resp.status == 200

        await wait_http(f"{mock}/models", ready)
        await wait_http(f"http://127.0.0.1:{runner_port}/readyz", ready)
        await wait_http(f"{gateway}/readyz", ready)
        prompt = " ".join(f"w{i}" for i in range(args.tokens - 2))  # the mock echoes "You said: <prompt>"
        direct = client_for(mock, args.concurrent + 10)
        platform = client_for(f"{gateway}/v1", args.concurrent + 10)

        print(f"# bench_runs: mock at {1 / args.token_delay:.0f} tokens/s, {args.tokens} tokens per stream, "
              f"one agent-runner ({args.workers} worker process{'es' if args.workers > 1 else ''}), one gateway, "
              f"nats-server -js; {os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"tracing {'on (always_on, OTLP/HTTP to a local receiver)' if args.trace else 'off'}")
        if args.streams:
            await sequential_round(direct, platform, prompt, args.streams, services=procs[1:], tokens=args.tokens)

        tokens = " ".join(f"c{i}" for i in range(args.tokens))
        rule = {"match": {"user_contains": "concurrent"}, "script": {"text": tokens, "token_delay": args.load_delay}}
        async with aiohttp.ClientSession() as http, http.post(f"{mock.removesuffix('/v1')}/_mock/rules",
                                                                json=rule) as resp:
            assert resp.status == 201, await resp.text()
        runner_kind = "process" if args.workers == 1 else f"pod ({args.workers} worker processes)"
        print(f"\n## {args.concurrent} concurrent streams on one agent-runner {runner_kind} "
              f"({1 / args.load_delay:.0f} tokens/s each; light aiohttp clients on both paths; "
              f"load average {os.getloadavg()[0]:.2f} before)")
        pids = {"client (this process)": os.getpid(), "mock": procs[0].pid, "agent-runner": procs[1].pid,
                "gateway": procs[2].pid, "nats-server": nats_pid}
        anchor_cpu = CpuMeter({k: pids[k] for k in ("client (this process)", "mock")})
        anchor_cpu.start()
        load_anchor, anchor_wall = await concurrent(mock, "gpt-4o-mini", "concurrent", args.concurrent)
        anchor_cpu.stop()
        profiles = [Profile.record(name, pids[name], args.profile, args.profile_rate)
                    for name in ("agent-runner", "gateway")] if args.profile else []
        platform_cpu = CpuMeter(pids, trees=frozenset({"agent-runner"}))
        platform_cpu.start()
        load, wall = await concurrent(f"{gateway}/v1", "assistant", "concurrent", args.concurrent)
        platform_cpu.stop()
        for profile in profiles:
            profile.stop()
        completed = len(load.ttft)
        print(f"{'figure':<26}{'platform':>14}{'anchor':>14}{'added':>14}")
        for name, value, base in [("TTFT p50", pct(load.ttft, 50), pct(load_anchor.ttft, 50)),
                                  ("TTFT p99", pct(load.ttft, 99), pct(load_anchor.ttft, 99)),
                                  ("inter-token p50", pct(load.gaps, 50), pct(load_anchor.gaps, 50)),
                                  ("inter-token p99", pct(load.gaps, 99), pct(load_anchor.gaps, 99)),
                                  ("wall time", wall, anchor_wall)]:
            print(f"{name:<26}{ms(value):>14}{ms(base):>14}{ms(value - base):>14}")
        print(f"streams that produced tokens: platform {completed}/{args.concurrent} (failures {load.failures}), "
              f"anchor {len(load_anchor.ttft)}/{args.concurrent} (failures {load_anchor.failures})")
        if load.reasons:
            print(f"platform failures: {dict(load.reasons.most_common(5))}")
        print(f"chunks per token: platform {load.chunks / max(load.tokens, 1):.2f}, "
              f"anchor {load_anchor.chunks / max(load_anchor.tokens, 1):.2f}")
        print_cpu(anchor_cpu.spent, load_anchor.tokens, platform_cpu.spent, load.tokens)
        for profile in profiles:
            print(f"\n{profile.summary()}")

        if args.starts:
            meter = CpuMeter({k: pids[k] for k in ("agent-runner", "nats-server", "mock")},
                             trees=frozenset({"agent-runner"}))
            starts_profile = (Profile.record("agent-runner during the burst of starts", pids["agent-runner"],
                                             args.profile, args.profile_rate, file="starts-runner")
                              if args.profile else None)
            await starts_round(nats_server.url, mock, args.starts, meter)
            if starts_profile is not None:
                starts_profile.stop()
                print(f"\n{starts_profile.summary()}")
        if args.cancels:
            await cancel_round(gateway, args.cancels)
        await direct.close()
        await platform.close()
        return 0
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.to_thread(proc.wait, 15)  # the services flush their last spans as they stop
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.trace:
            print(f"\nspans received by the OTLP receiver: {sink.spans}")
        await sink.stop()
        nats_server.stop()


def print_cpu(anchor: dict[str, float], anchor_tokens: int, platform: dict[str, float], tokens: int) -> None:
    """CPU per streamed token of every process on both paths; the platform's own (runner, gateway,
    nats-server) beside the direct client's."""
    print(f"\nCPU per streamed token (utime+stime from /proc; {tokens} tokens through the platform, "
          f"{anchor_tokens} direct)")
    print(f"{'process':<26}{'platform CPU':>14}{'per token':>14}{'direct CPU':>14}{'per token':>14}")
    for name, spent in platform.items():
        base = anchor.get(name)
        direct = "" if base is None else f"{base:12.2f} s{1e6 * base / max(anchor_tokens, 1):11.1f} us"
        print(f"{name:<26}{spent:12.2f} s{1e6 * spent / max(tokens, 1):11.1f} us{direct}")
    ours = sum(platform[name] for name in ("agent-runner", "gateway", "nats-server")) / max(tokens, 1)
    client = anchor["client (this process)"] / max(anchor_tokens, 1)
    ratio = ours / client if client else float("nan")
    print(f"platform (runner + gateway + nats-server) per token: {1e6 * ours:.1f} us = {ratio:.2f}x the direct "
          f"client's {1e6 * client:.1f} us   goal <= 3x{'  met' if ratio <= 3 else '  NOT met'}")


async def sequential_round(direct: openai.AsyncOpenAI, platform: openai.AsyncOpenAI, prompt: str, streams: int,
                           *, services: list[subprocess.Popen[bytes]], tokens: int) -> None:
    """The streams one at a time on both paths, and the agent-runner's and gateway's CPU per stream."""
    cpu_before = [tree_cpu_seconds(p.pid) for p in services]  # the runner's worker processes counted with it
    anchor, ours = await sequential(direct, platform, prompt, streams)
    cpu = [tree_cpu_seconds(p.pid) - before for p, before in zip(services, cpu_before, strict=True)]
    print(f"\n## {streams} sequential streams (openai client -> mock | -> platform -> mock)")
    print(f"{'figure':<26}{'platform':>14}{'anchor':>14}{'added':>14}{'goal':>12}")
    rows = [("TTFT p50", pct(ours.ttft, 50), pct(anchor.ttft, 50), 0.005),
            ("TTFT p99", pct(ours.ttft, 99), pct(anchor.ttft, 99), 0.020),
            ("inter-token p50", pct(ours.gaps, 50), pct(anchor.gaps, 50), None),
            ("inter-token p99", pct(ours.gaps, 99), pct(anchor.gaps, 99), 0.002)]
    for name, value, base, goal in rows:
        added = value - base
        verdict = "" if goal is None else ("  met" if added <= goal else "  NOT met")
        goal_text = "" if goal is None else f"<= {goal * 1000:g} ms"
        print(f"{name:<26}{ms(value):>14}{ms(base):>14}{ms(added):>14}{goal_text:>12}{verdict}")
    print(f"failures: platform {ours.failures}, anchor {anchor.failures}")
    print(f"CPU per stream: agent-runner {cpu[0] / streams * 1000:.2f} ms, gateway {cpu[1] / streams * 1000:.2f} ms "
          f"({tokens} tokens each: {sum(cpu) / (streams * tokens) * 1e6:.0f} us per token, both together)")


async def starts_round(nats_url: str, mock: str, count: int, meter: CpuMeter) -> None:
    """``count`` runs asked to start at once, straight to the runner over NATS (each one token long): runs
    started (claimed, ``run_started`` stored, accepted) per second, beside ``count`` one-token completions
    asked of the mock at once (every run start makes one)."""
    rule = {"match": {"user_contains": "burst"}, "script": {"text": "ok", "token_delay": 0}}
    async with aiohttp.ClientSession() as http, http.post(f"{mock.removesuffix('/v1')}/_mock/rules",
                                                            json=rule) as resp:
        assert resp.status == 201, await resp.text()
    anchor = Timings()
    connector = aiohttp.TCPConnector(limit=count + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        await asyncio.gather(*(raw_stream(http, mock, "gpt-4o-mini", "burst", anchor) for _ in range(count)))
        anchor_wall = time.perf_counter() - began
    nc = await nats.connect(nats_url)
    client = RunClient(nc, nc.jetstream(), Subjects("bench"), request_timeout=60)
    try:
        ids = [f"burst-{uuid.uuid4().hex}" for _ in range(count)]
        accepted_at: list[float] = []

        async def one(run_id: str) -> bool:
            reply = await client.start(RunRequest(run_id=run_id, agent="assistant", input="burst"))
            accepted_at.append(time.perf_counter())
            return isinstance(reply, RunAccepted)

        meter.start()
        began = time.perf_counter()
        accepted = sum(await asyncio.gather(*(one(run_id) for run_id in ids)))
        wall = accepted_at[-1] - began if accepted_at else float("nan")
        spent = meter.stop()

        async def finish(run_id: str) -> None:
            async with contextlib.aclosing(client.follow(run_id)) as events:
                async for _ in events:
                    pass

        await asyncio.gather(*(finish(run_id) for run_id in ids))
    finally:
        await nc.close()
    print(f"\n## a burst of {count} run starts on one agent-runner (NATS request -> accepted; one-token runs)")
    print(f"accepted {accepted}/{count} in {ms(wall)}: {accepted / wall:8.0f} starts/s; anchor: {count} one-token "
          f"completions straight from the mock in {ms(anchor_wall)}: {count / anchor_wall:8.0f} /s "
          f"({anchor.failures} failed); ratio {anchor_wall / wall:.2f}")
    print("CPU per start: " + ", ".join(f"{name} {1e3 * cpu / max(accepted, 1):.2f} ms"
                                        for name, cpu in spent.items()))


async def cancel_round(gateway: str, count: int) -> None:
    took = await cancels(gateway, count)
    print(f"\n## cancel ({count} runs cancelled after their first token; REST cancel -> run_cancelled)")
    print(f"cancel p50 {ms(pct(took, 50))}   p99 {ms(pct(took, 99))}   goal p99 <= 100 ms"
          f"{'  met' if pct(took, 99) <= 0.1 else '  NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100, help="sequential streams per path (default 100)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per stream (default 20)")
    parser.add_argument("--token-delay", type=float, default=0.01, help="mock seconds per token (default 0.01)")
    parser.add_argument("--concurrent", type=int, default=1000, help="concurrent streams (default 1000)")
    parser.add_argument("--cancels", type=int, default=100, help="runs to cancel (default 100)")
    parser.add_argument("--load-delay", type=float, default=0.05,
                        help="mock seconds per token in the concurrent round (default 0.05)")
    parser.add_argument("--request-timeout", type=float, default=60,
                        help="the gateway's GATEWAY_RUN_REQUEST_TIMEOUT, seconds (default 60)")
    parser.add_argument("--starts", type=int, default=1000,
                        help="runs asked to start at once in the burst round (default 1000; 0 skips it)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy record the agent-runner and gateway during the concurrent platform round "
                             "into DIR (raw collapsed stacks) and print where their time goes")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--runner-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the agent-runner (repeatable), e.g. RUN_DELTA_COALESCE_MS=5")
    parser.add_argument("--workers", type=int, default=1, metavar="W",
                        help="the agent-runner's RUN_WORKERS: worker processes behind its one port (default 1)")
    parser.add_argument("--trace", action="store_true",
                        help="trace every run (always_on), exporting to a local OTLP receiver")
    sys.exit(asyncio.run(main(parser.parse_args())))
