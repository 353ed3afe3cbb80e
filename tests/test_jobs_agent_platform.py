"""The built-in run_agent job on the platform's own agent-runner (needs the runs feature: skipped without it).

Written against main's ``raaf.Runner``, ``services.agent_runner`` and ``raaf.testing.OpenAIMock``; it runs once
this branch and the runs feature are merged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.msg import Msg

pytest.importorskip("raaf.runner")
pytest.importorskip("raaf.testing")

from proto.jobs import JobStatus
from raaf.jobs import JobsClient
from raaf.testing import OpenAIMock, Script
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.service.app import App
from tests.support.env import service_env, unique_prefix
from tests.support.runs import runner_env
from tests.support.waiting import eventually


async def test_a_run_agent_job_runs_on_the_agent_runner_and_publishes_its_answer(
    nats_server: NatsServer, redis_server: ValkeyServer, tmp_path: Path, start_app: Callable[[App], Awaitable[App]]
) -> None:
    prefix = unique_prefix()
    async with OpenAIMock() as mock:
        mock.enqueue(Script(text="Your invoice is paid."))
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, prefix, tmp_path))))
        scheduler = await start_app(SchedulerApp(SchedulerSettings.from_env(
            service_env(nats_server.url, redis_server.url, RAAF_PREFIX=prefix, JOBS_TICK_INTERVAL="0.05"))))
        assert isinstance(scheduler, SchedulerApp) and scheduler.agent_worker is not None
        nc = await nats.connect(nats_server.url)
        events: asyncio.Queue[bytes] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            await events.put(msg.data)

        await nc.subscribe(f"{prefix}.events.billing.answered", cb=collect)
        jobs = JobsClient(nc, prefix=prefix)
        accepted = await jobs.enqueue_job("run_agent", {"agent": "assistant", "input": "Is my invoice paid?",
                                                        "event": "billing.answered"})

        async def done() -> bool:
            return (await jobs.get_job(accepted.job_id)).status is JobStatus.SUCCEEDED

        await eventually(done, 20, what="run_agent job done")
        result = msgspec.json.decode((await jobs.get_job(accepted.job_id)).result)
        assert (result["output"], result["agent"]) == ("Your invoice is paid.", "assistant")
        assert result["run_id"] == f"job-{accepted.job_id}-1"
        event = msgspec.json.decode(await asyncio.wait_for(events.get(), 5))
        assert event["output"] == "Your invoice is paid." and event["job_id"] == accepted.job_id
        stats = await scheduler.stats()
        assert stats["background_processor"]["completed_jobs"] == 1
        await nc.close()
