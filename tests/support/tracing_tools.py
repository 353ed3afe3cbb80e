"""Tools for the tracing tests (RAAF_TOOLS_MODULE=tests.support.tracing_tools): one enqueues an agent job."""

from __future__ import annotations

import os

import nats

from shared.clients.jobs import JobsClient


async def schedule_followup(note: str) -> str:
    """Schedule a follow-up: a background run of the followup agent (a run_agent job)."""
    nc = await nats.connect(os.environ["NATS_URL"])
    try:
        jobs = JobsClient(nc, prefix=os.environ["RAAF_PREFIX"])
        accepted = await jobs.enqueue_job("run_agent", {"agent": "followup", "input": note, "event": None})
        return f"scheduled {accepted.job_id}"
    finally:
        await nc.close()
