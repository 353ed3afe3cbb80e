"""CPU a traced run's spans cost: the runner's and gateway's span code for one run, exported over OTLP/HTTP.

Usage: ``python bench/bench_tracing.py [--runs N] [--tokens T]``.

Runs the span code of one run ``N`` times in this process (the gateway's request span, the run's span, one model
turn with its GenAI attributes, first-token event and ``T`` per-token checks, the run's end), once with tracing
off (the API's no-op tracer: the anchor) and once on (the SDK, batch processor and OTLP/HTTP exporter sending to a
receiver in a child process), and prints the CPU time of this process per run and per token, export included.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.devstack.servers import free_port  # noqa: E402
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
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per measurement (default 5000)")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per run (default 20)")
    sys.exit(main(parser.parse_args()))
