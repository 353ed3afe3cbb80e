"""The ``raaf`` command: run the whole platform locally, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from shared.stack import Stack, run_stack


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raaf", description="RAAF Streaming: streaming AI agents in real time.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="start NATS, Valkey and all five services locally",
        description="Start nats-server (JetStream) and valkey-server under --data-dir unless NATS_URL / REDIS_URL "
        "point at reachable servers, then all five services; print where to connect; Ctrl-C stops everything.",
    )
    up.add_argument("--data-dir", type=Path, default=Path("var"), help="where servers keep data and logs (./var)")
    up.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    sub.add_parser(
        "mock-openai",
        help="serve the OpenAI-wire mock model (for demos and tests); see `raaf mock-openai --help`",
        add_help=False,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mock-openai"]:
        from raaf.testing.openai_mock import main as mock_main

        return mock_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="raaf: %(message)s")
    if args.command == "up":
        return asyncio.run(run_stack(Stack(data_dir=args.data_dir.resolve(), host=args.host)))
    return 2


if __name__ == "__main__":
    sys.exit(main())
