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
from proto.runs import is_run_id
from raaf.jobs import BackgroundProcessor
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.jobs.agent_job import AGENT_JOB_TYPE, AgentOutput, handle_agent_jobs, job_run_id
from tests.support.env import unique_prefix


class ShoutingRunner:
    """Answers in capitals; fails the first ``failures`` runs."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.runs: list[tuple[str, str, dict[str, str]]] = []
        self.owners: list[str | None] = []
        self.ran = asyncio.Event()

    async def run_agent(self, agent: str, input: str, *, run_id: str, metadata: dict[str, str],
                        timeout: float | None, owner: str | None = None,
                        max_turns: int | None = None) -> AgentOutput:
        self.owners.append(owner)
        self.runs.append((agent, run_id, metadata))
        self.ran.set()
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


async def test_a_cron_fired_agent_job_runs_under_a_valid_run_id_as_its_schedules_owner(
    processor: BackgroundProcessor,
) -> None:
    runner = ShoutingRunner()
    handle_agent_jobs(processor, runner)
    await processor.start()
    await processor.schedule_recurring("tick", AGENT_JOB_TYPE, {"agent": "support", "input": "hi", "event": None},
                                       cron="* * * * * *", owner="alice")
    await asyncio.wait_for(runner.ran.wait(), 5)  # a six-field cron fires within a second
    await processor.remove_recurring("tick")
    _, run_id, metadata = runner.runs[0]
    assert is_run_id(run_id) and run_id == job_run_id(metadata["job_id"], 1)
    assert metadata["job_id"].startswith("cron:tick:") and runner.owners[0] == "alice"
    info = await processor.wait_for_job(metadata["job_id"], timeout=5)
    assert info.owner == "alice"


def test_job_run_ids_are_run_ids_for_any_job_id() -> None:
    assert job_run_id("abc", 2) == "job-abc-2"
    assert all(is_run_id(job_run_id(job_id, 1)) for job_id in ("cron:nightly:1700000000000", "u.x:y", "a" * 200))
    assert job_run_id("a:b", 1) != job_run_id("a_b", 1)
