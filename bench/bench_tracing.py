"""CPU a traced run's spans cost: the runner's and gateway's span code for one run, exported over OTLP/HTTP.

Usage: ``python bench/bench_tracing.py [--runs N] [--tokens T] [--events E]``.

Runs the span code of one run ``N`` times in this process (the gateway's request span, the run's span, one model
turn with its GenAI attributes, first-token event and ``T`` per-token checks, the run's end), once with tracing
off (the API's no-op tracer: the anchor) and once on (the SDK, batch processor and OTLP/HTTP exporter sending to a
receiver in a child process), and prints the CPU time of this process per run and per token, export included.

Then the per-event part of tracing: ``E`` run-event-sized messages published to a real nats-server and read back
by a subscriber in this process, with the run writer's headers (``Nats-Msg-Id``) and with the run's
``traceparent`` added, as every stored run event carries it while tracing is on: the CPU per event of building,
encoding and parsing the one extra header (nats-py's own code), and its bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402

from shared.devstack.servers import NatsServer, free_port  # noqa: E402
from shared.tracing import TRACING, TracingSettings, genai, install_tracing, server_span  # noqa: E402
from shared.tracing.setup import flush_tracing  # noqa: E402

RECEIVER = """
import sys
from aiohttp import web
async def export(request):
    await request.read()
    return web.Response(content_type="application/x-protobuf")
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", export)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def one_run(tokens: int) -> None:
    with server_span("raaf.gateway", "agent_stream"), genai.agent_run(None, run_id="r1", agent="assistant") as run:
        with genai.model_turn(agent="assistant", model="gpt-4o-mini", base_url="http://127.0.0.1:1/v1",
                              turn=1) as turn:
            for _ in range(tokens):
                if turn is not None:
                    turn.first_token()
            if turn is not None:
                turn.end(finish_reason="stop", input_tokens=12, output_tokens=tokens, calls=0)
        genai.record_outcome(run, "completed", input_tokens=12, output_tokens=tokens)


def measure(runs: int, tokens: int) -> float:
    started = time.process_time()  # every thread of this process: the exporter's too
    for _ in range(runs):
        one_run(tokens)
    flush_tracing(30_000)
    return (time.process_time() - started) / runs


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


async def event_headers(url: str, events: int, trace: dict[str, str] | None) -> float:
    """CPU per event of publishing ``events`` with the run writer's headers (plus ``trace``) and reading them."""
    publisher, reader = await nats.connect(url), await nats.connect(url)
    try:
        got = 0
        done = asyncio.get_running_loop().create_future()

        async def read(msg: object) -> None:
            nonlocal got
            got += 1
            if got == events and not done.done():
                done.set_result(None)

        await reader.subscribe("bench.events", cb=read)
        await reader.flush()
        payload = b'{"type":"run_text_delta","run_id":"r1","seq":7,"at":1.0,"delta":" word"}'
        started = time.process_time()
        for seq in range(events):
            headers = {"Nats-Msg-Id": f"r1:{seq}"}
            if trace is not None:
                headers.update(trace)
            await publisher.publish("bench.events", payload, headers=headers)
        await publisher.flush()
        await asyncio.wait_for(done, 60)
        return (time.process_time() - started) / events
    finally:
        await publisher.close()
        await reader.close()


async def event_round(events: int) -> tuple[float, float]:
    server = NatsServer(Path(tempfile.mkdtemp(prefix="bench-tracing-")))
    server.start()
    try:
        plain = traced = 0.0
        for _ in range(3):  # alternated, the best of each: machine noise hits both alike
            plain = min(plain or 1.0, await event_headers(server.url, events, None))
            traced = min(traced or 1.0, await event_headers(server.url, events, TRACEPARENT))
        return plain, traced
    finally:
        server.stop()


def main(args: argparse.Namespace) -> int:
    anchor = measure(args.runs, args.tokens)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        wait_listening(port)
        os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", str(4 * args.runs))  # measure exports, not drops
        os.environ["OTEL_TRACES_SAMPLER"] = "always_on"
        install_tracing("bench", "b1", "0", TracingSettings(endpoint=f"http://127.0.0.1:{port}/v1/traces"))
        assert TRACING.on
        traced = measure(args.runs, args.tokens)
    finally:
        receiver.terminate()
        receiver.wait()
    print(f"# bench_tracing: {args.runs} runs, 1 model turn of {args.tokens} tokens each, 3 spans per run")
    print(f"{'figure':<34}{'tracing on':>14}{'off (anchor)':>14}{'added':>14}")
    print(f"{'CPU per run':<34}{traced * 1e6:>11.1f} us{anchor * 1e6:>11.1f} us{(traced - anchor) * 1e6:>11.1f} us")
    per_token, anchor_token = traced / args.tokens, anchor / args.tokens
    print(f"{'CPU per token (run cost / tokens)':<34}{per_token * 1e6:>11.2f} us{anchor_token * 1e6:>11.2f} us"
          f"{(per_token - anchor_token) * 1e6:>11.2f} us")
    if args.events:
        plain, traced_event = asyncio.run(event_round(args.events))
        extra = len(b"traceparent: ") + len(TRACEPARENT["traceparent"]) + 2
        print(f"\n# {args.events} run events published and read back over a real nats-server (best of 3)")
        print(f"{'CPU per event, both sides':<34}{traced_event * 1e6:>11.2f} us{plain * 1e6:>11.2f} us"
              f"{(traced_event - plain) * 1e6:>11.2f} us")
        print(f"header bytes added per stored event: {extra}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per measurement (default 5000)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per run (default 20)")
    parser.add_argument("--events", type=int, default=20000,
                        help="run events for the per-event header figure (default 20000; 0 skips it)")
    sys.exit(main(parser.parse_args()))
