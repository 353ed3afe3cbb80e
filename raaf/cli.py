"""The ``raaf`` command: run the whole platform locally, and operator tools."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import msgspec

from proto.subjects import InvalidNameError, check_prefix
from raaf.stats import health, stats
from raaf.stats_report import render_health, render_stats
from shared.devstack.stack import Stack, run_stack
from shared.errors import StreamingError
from shared.nats.permissions import NatsUsers, password_variable
from shared.openai_mock import main as mock_main


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
    stats = sub.add_parser(
        "stats",
        help="print the cluster's combined statistics (or --health)",
        description="Print the seed's combined Streaming.stats (websocket_server, async_runner, background_processor, "
        "message_queue, event_emitter, chat_system) summed over every replica, as the metrics service reports "
        "them, or gathered from every instance directly when no metrics service runs. --health lists every "
        "service instance with its readiness instead. Exit status 1 when NATS cannot be reached.",
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.add_argument("--health", action="store_true", help="list every instance and its /readyz result")
    stats.add_argument("--nats-url", default=None, help="NATS servers (default: $NATS_URL or nats://127.0.0.1:4222)")
    stats.add_argument("--prefix", default=None, help="subject prefix of the deployment ($RAAF_PREFIX or raaf)")
    stats.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (3)")
    nats_config = sub.add_parser(
        "nats-config",
        help="print nats-server's authorization block: one user per service, with its subject permissions",
        description="Print the authorization block for nats-server (include it from its config): the five "
        "services, a 'client' user for library users and an 'admin', each with the subject permissions "
        "docs/security.md describes. Passwords are nats-server variables (RAAF_NATS_<ROLE>_PASSWORD, from a "
        "Secret or .env) unless --passwords, which writes fresh random ones into the block; --env prints fresh "
        "RAAF_NATS_<ROLE>_PASSWORD=... lines for a .env or Secret instead.",
    )
    nats_config.add_argument("--prefix", default="raaf", help="subject prefix of the deployment (raaf)")
    nats_config.add_argument("--passwords", action="store_true", help="literal random passwords in the block")
    nats_config.add_argument("--env", action="store_true", help="print random passwords as env lines instead")
    return parser


def _print_nats_config(args: argparse.Namespace) -> int:
    try:
        users = NatsUsers.generate(check_prefix(args.prefix))
    except InvalidNameError as exc:
        print(f"raaf nats-config: {exc}", file=sys.stderr)
        return 2
    if args.env:
        print("".join(f"{password_variable(role)}={password}\n" for role, password in users.passwords.items()),
              end="")
    else:
        print(users.config(env_refs=not args.passwords), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["mock-openai"]:
        return mock_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="raaf: %(message)s")
    if args.command == "up":
        # Not a cycle: the launcher loads every service's code (seconds of imports) and only `up` needs it, so
        # `raaf stats` and `raaf nats-config` start without it.
        from services.launcher import stack_services

        stack = Stack(data_dir=args.data_dir.resolve(), services=stack_services(), host=args.host)
        return asyncio.run(run_stack(stack))
    if args.command == "stats":
        return _print_stats(args)
    if args.command == "nats-config":
        return _print_nats_config(args)
    return 2


def _print_stats(args: argparse.Namespace) -> int:
    try:
        if args.health:
            cluster_health = asyncio.run(health(nats_url=args.nats_url, prefix=args.prefix, timeout=args.timeout))
            text = (msgspec.json.format(msgspec.json.encode(cluster_health)).decode() if args.json
                    else render_health(cluster_health))
        else:
            cluster_stats = asyncio.run(stats(nats_url=args.nats_url, prefix=args.prefix, timeout=args.timeout))
            text = (msgspec.json.format(msgspec.json.encode(cluster_stats)).decode() if args.json
                    else render_stats(cluster_stats))
    except StreamingError as exc:
        print(f"raaf stats: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
