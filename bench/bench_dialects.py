"""Time to first token of every client dialect beside the Chat Completions facade, in the same run.

Usage: ``python bench/bench_dialects.py [--streams N] [--tokens T] [--token-delay D]``.

Starts nats-server -js, the OpenAI mock (its own process), one agent-runner and one gateway, then streams ``N``
answers per dialect, one after another and in rotating order so machine noise hits all alike, each read with
aiohttp (a client light enough to measure the servers): ``/v1/chat/completions`` (the anchor),
``/v1/responses``, the AI SDK UI message stream and AG-UI. TTFT is from the request to the first text delta.
Goal: each dialect's added TTFT p50 within 1 ms of the Chat Completions facade's.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_runs import Timings, ms, pct, start, wait_http  # noqa: E402

from shared.devstack.servers import NatsServer, free_port  # noqa: E402

# Each dialect: (path, the request body for a prompt, whether an SSE line carries the first text).
Dialect = tuple[str, Callable[[str], dict[str, Any]], Callable[[bytes], bool]]
DIALECTS: dict[str, Dialect] = {
    "chat.completions": ("/v1/chat/completions",
                         lambda p: {"model": "assistant", "stream": True, "messages": [{"role": "user", "content": p}]},
                         lambda line: line.startswith(b'data: {') and b'"content":"' in line
                         and b'"content":""' not in line),
    "responses": ("/v1/responses", lambda p: {"model": "assistant", "stream": True, "input": p},
                  lambda line: line.startswith(b"event: response.output_text.delta")),
    "ai-sdk ui": ("/v1/ui/assistant/chat",
                  lambda p: {"id": uuid.uuid4().hex[:16], "trigger": "submit-message", "messages": [
                      {"id": "u1", "role": "user", "parts": [{"type": "text", "text": p}]}]},
                  lambda line: line.startswith(b'data: {"type":"text-delta"')),
    "ag-ui": ("/v1/ag-ui/assistant",
              lambda p: {"threadId": "bench", "runId": uuid.uuid4().hex, "messages": [
                  {"id": "u1", "role": "user", "content": p}], "tools": [], "context": []},
              lambda line: line.startswith(b'data: {"type":"TEXT_MESSAGE_CONTENT"')),
}


async def one(http: aiohttp.ClientSession, gateway: str, dialect: Dialect, prompt: str, into: Timings) -> None:
    path, body, first_text = dialect
    started = time.perf_counter()
    try:
        async with http.post(gateway + path, json=body(prompt), headers={"Accept": "text/event-stream"}) as resp:
            if resp.status != 200:
                into.failures += 1
                return
            seen = False
            async for line in resp.content:
                if not seen and first_text(line):
                    into.ttft.append(time.perf_counter() - started)
                    seen = True
            if not seen:
                into.failures += 1
    except aiohttp.ClientError:
        into.failures += 1


async def measure(gateway: str, prompt: str, streams: int) -> dict[str, Timings]:
    results = {name: Timings() for name in DIALECTS}
    names = list(DIALECTS)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        for name in names * 3:  # warm every path
            await one(http, gateway, DIALECTS[name], prompt, Timings())
        for i in range(streams):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                await one(http, gateway, DIALECTS[name], prompt, results[name])
    return results


async def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-dialects-"))
    nats_server = NatsServer(work / "nats")
    nats_server.start()
    procs = []
    try:
        mock_port, runner_port, gateway_port = free_port(), free_port(), free_port()
        procs.append(start(["-m", "raaf.testing.openai_mock", "--port", str(mock_port), "--token-delay",
                            str(args.token_delay), "--no-record-requests"], {}, work / "mock.log"))
        mock = f"http://127.0.0.1:{mock_port}/v1"
        common = {"NATS_URL": nats_server.url, "RAAF_PREFIX": "bench", "LOG_LEVEL": "warning",
                  "HTTP_HOST": "127.0.0.1"}
        procs.append(start(["-m", "services.agent_runner"], {**common, "HTTP_PORT": str(runner_port),
                                                              "OPENAI_BASE_URL": mock}, work / "runner.log"))
        procs.append(start(["-m", "services.gateway"], {**common, "WEBSOCKET_HOST": "127.0.0.1",
                                                         "WEBSOCKET_PORT": str(gateway_port)}, work / "gateway.log"))
        gateway = f"http://127.0.0.1:{gateway_port}"

        async def ready(resp: aiohttp.ClientResponse) -> bool:
            return resp.status == 200

        await wait_http(f"{mock}/models", ready)
        await wait_http(f"http://127.0.0.1:{runner_port}/readyz", ready)
        await wait_http(f"{gateway}/readyz", ready)
        prompt = " ".join(f"w{i}" for i in range(args.tokens - 2))
        results = await measure(gateway, prompt, args.streams)
        anchor = results["chat.completions"]
        print(f"\n## {args.streams} streams per dialect, one at a time ({args.tokens} tokens, "
              f"{args.token_delay * 1000:g} ms apart)")
        print(f"{'dialect':18} {'TTFT p50':>12} {'TTFT p99':>12} {'added p50':>12} {'failures':>9}  goal <= 1 ms")
        worst = 0.0
        for name, timings in results.items():
            added = pct(timings.ttft, 50) - pct(anchor.ttft, 50)
            if name != "chat.completions":
                worst = max(worst, added)
            print(f"{name:18} {ms(pct(timings.ttft, 50))} {ms(pct(timings.ttft, 99))} {ms(added)} "
                  f"{timings.failures:9d}  {'' if name == 'chat.completions' else 'ok' if added <= 0.001 else 'MISS'}")
        failures = sum(t.failures for t in results.values())
        return 0 if failures == 0 and worst <= 0.001 else 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        nats_server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--token-delay", type=float, default=0.002)
    sys.exit(asyncio.run(main(parser.parse_args())))
