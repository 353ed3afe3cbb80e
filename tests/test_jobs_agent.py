"""The built-in run_agent job: its plumbing (data, run ids, the completion event) with a runner given here.

The platform's own agent-runner is not wired in yet (it lives on feat/runs); ``AgentRunner`` is the seam.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.msg import Msg

from proto.jobs import JobStatus
from raaf.jobs import BackgroundProcessor
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.jobs.agent_job import AGENT_JOB_TYPE, AgentOutput, handle_agent_jobs
from tests.support.env import unique_prefix


class ShoutingRunner:
    """Answers in capitals; fails the first ``failures`` runs."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.runs: list[tuple[str, str, dict[str, str]]] = []

    async def run_agent(self, agent: str, input: str, *, run_id: str, metadata: dict[str, str],
                        timeout: float | None) -> AgentOutput:
        self.runs.append((agent, run_id, metadata))
        if len(self.runs) <= self.failures:
            raise ConnectionError("runner unavailable")
        return AgentOutput(output=input.upper(), agent=agent, run_id=run_id, usage={"total_tokens": len(input)})


@pytest.fixture
async def processor(nats_server: NatsServer, redis_server: ValkeyServer) -> AsyncIterator[BackgroundProcessor]:
    p = BackgroundProcessor(redis_server.url, nats_url=nats_server.url, prefix=unique_prefix(), retry_delay=0.01,
                            maintenance_interval=0.05)
    yield p
    await p.stop(timeout=1)


async def test_an_agent_job_runs_in_the_background_and_publishes_its_result_as_an_event(
    processor: BackgroundProcessor, nats_server: NatsServer
) -> None:
    runner = ShoutingRunner(failures=1)
    handle_agent_jobs(processor, runner)
    await processor.start()
    nc = await nats.connect(nats_server.url)
    events: asyncio.Queue[tuple[str, bytes, str | None]] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        await events.put((msg.subject, msg.data, (msg.headers or {}).get("Nats-Msg-Id")))

    await nc.subscribe(f"{processor.prefix}.events.>", cb=collect)
    job_id = await processor.enqueue_job(AGENT_JOB_TYPE, {"agent": "support", "input": "hello",
                                                          "event": "support.answered", "metadata": {"u": "1"}})
    result = await processor.job_result(job_id, timeout=5)
    assert (result["output"], result["agent"], result["usage"]) == ("HELLO", "support", {"total_tokens": 5})
    assert [run_id for _, run_id, _ in runner.runs] == [f"job-{job_id}-1", f"job-{job_id}-2"]
    assert runner.runs[1][2] == {"u": "1", "job_id": job_id}
    subject, data, msg_id = await asyncio.wait_for(events.get(), 2)
    assert subject == f"{processor.prefix}.events.support.answered" and msg_id == f"job-{job_id}"
    assert msgspec.json.decode(data)["output"] == "HELLO"
    await nc.close()


@pytest.mark.parametrize("data", [{"input": "no agent"}, {"agent": "a", "input": "x", "event": "bad.*"}, "text"])
async def test_bad_agent_job_data_fails_at_once_without_retries(processor: BackgroundProcessor,
                                                                data: object) -> None:
    runner = ShoutingRunner()
    handle_agent_jobs(processor, runner)
    await processor.start()
    info = await processor.wait_for_job(await processor.enqueue_job(AGENT_JOB_TYPE, data), timeout=5)
    assert (info.status, info.attempts, runner.runs) == (JobStatus.DEAD, 1, [])
    assert "not a run_agent job" in (info.error or "")
