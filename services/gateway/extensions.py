"""The extensions every gateway runs: features from other services add one line each here."""

from __future__ import annotations

from services.gateway.chat import ChatExtension
from services.gateway.context import GatewayContext
from services.gateway.events import EventsExtension
from services.gateway.extension import GatewayExtension
from services.gateway.jobs import JobsExtension
from services.gateway.runs import RunsExtension


def default_extensions(ctx: GatewayContext) -> list[GatewayExtension]:
    """Built in ``GatewayApp.__init__``; their routes are installed there, started after NATS connects."""
    runs = RunsExtension(ctx)
    return [
        # One line per extension, e.g. RunsExtension(ctx),
        ChatExtension(ctx),
        runs,
        EventsExtension(ctx),
        JobsExtension(ctx, runs=runs.access),  # run_agent jobs: checked as the runs extension checks a run start
    ]
