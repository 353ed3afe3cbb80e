"""The mock's command line: serve until Ctrl-C or SIGTERM (`python -m raaf.testing.openai_mock`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from shared.openai_mock.demo import demo_script
from shared.openai_mock.script import default_script
from shared.openai_mock.server import OpenAIMock


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m raaf.testing.openai_mock",
        description="Serve a scripted OpenAI-compatible chat-completions API (streaming and not) until "
        "Ctrl-C or SIGTERM. Without rules it echoes the last user message; '[[tool:NAME {json}]]' in a "
        "message makes it call that tool. Control endpoints: /_mock/rules, /_mock/queue, "
        "/_mock/requests, /_mock/stats.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8900, help="port to bind, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.02,
        help="seconds between streamed tokens (default: %(default)s, 50 tokens/s)",
    )
    parser.add_argument(
        "--no-record-requests",
        action="store_true",
        help="do not keep request bodies for /_mock/requests (long benchmarks)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="answer like the platform's demo model (canned multi-sentence answers, tool calls and handoffs "
        "when the request offers them) instead of echoing",
    )
    return parser


async def _serve(host: str, port: int, token_delay: float, record_requests: bool, demo: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    fallback = demo_script if demo else default_script
    async with OpenAIMock(host, port, token_delay=token_delay, record_requests=record_requests,
                          fallback=fallback) as mock:
        print(f"OpenAI mock listening on {mock.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.token_delay < 0:
        parser.error("--token-delay must be >= 0")
    try:
        asyncio.run(_serve(args.host, args.port, args.token_delay, not args.no_record_requests, args.demo))
    except OSError as exc:
        print(f"cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
