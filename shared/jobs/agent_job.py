"""The built-in ``run_agent`` job type: run an agent in the background, publish its result as an event."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from nats.aio.client import Client as NATS

from proto.jobs import AgentJobCompleted, RunAgentJob, jobs_encoder
from proto.runs import is_run_id
from proto.subjects import InvalidNameError, Subjects, check_event_name
from shared.jobs.errors import PermanentJobError, invalid_job_data
from shared.jobs.handler import current_job
from shared.jobs.processor import BackgroundProcessor

AGENT_JOB_TYPE = "run_agent"
_data = msgspec.json.Decoder(RunAgentJob)


@dataclass(frozen=True, slots=True)
class AgentOutput:
    output: str
    agent: str
    run_id: str
    usage: dict[str, int] = field(default_factory=dict)


class AgentRunner(Protocol):
    """What the job needs to run an agent: the platform's runs client, or anything else that can."""

    async def run_agent(self, agent: str, input: str, *, run_id: str, metadata: dict[str, str],
                        timeout: float | None, owner: str | None = None,
                        max_turns: int | None = None) -> AgentOutput: ...


def job_run_id(job_id: str, attempt: int) -> str:
    """The run id of a job's attempt: ``job-<job id>-<attempt>`` when that is a run id, else the job id's digest
    in its place (cron and namespaced job ids hold ``:`` and ``.``, which run ids may not)."""
    plain = f"job-{job_id}-{attempt}"
    if is_run_id(plain):
        return plain
    digest = hashlib.blake2b(job_id.encode(), digest_size=16).hexdigest()
    return f"jobx-{digest}-{attempt}"


def handle_agent_jobs(processor: BackgroundProcessor, runner: AgentRunner, *, job_type: str = AGENT_JOB_TYPE,
                      nats: NATS | None = None, prefix: str | None = None) -> None:
    """Register the ``run_agent`` handler on ``processor``.

    Each attempt runs under its own run id (:func:`job_run_id`) and as the job's owner, so only that identity
    can read the run; the completion event carries the ``Nats-Msg-Id`` ``job-<job id>``, so JetStream keeps one
    event per job even if an attempt is repeated. Bad job data fails the job at once (no retry); a failed run
    is retried like any job. Whether the owner may run that agent (and everything it reaches) and emit that event
    is decided when the job is enqueued (``shared.access``), which also writes the token's run limits into the data.
    """
    subjects = Subjects(prefix or processor.prefix)

    async def run_agent(data: Any) -> dict[str, Any]:
        try:
            job = _data.decode(msgspec.json.encode(data))
            event_subject = subjects.event(check_event_name(job.event)) if job.event else None
        except (msgspec.MsgspecError, InvalidNameError) as exc:
            raise PermanentJobError(f"not a run_agent job: {exc}") from None
        ctx = current_job()
        output = await runner.run_agent(job.agent, job.input, run_id=job_run_id(ctx.job_id, ctx.attempt),
                                        metadata={**job.metadata, "job_id": ctx.job_id}, timeout=job.timeout,
                                        owner=ctx.owner, max_turns=job.max_turns)
        completed = AgentJobCompleted(job_id=ctx.job_id, run_id=output.run_id, agent=output.agent,
                                      output=output.output, usage=output.usage, at=time.time())
        connection = nats or processor.nats
        if event_subject is not None:
            if connection is None:
                raise invalid_job_data("run_agent jobs that publish an event need a NATS connection")
            await connection.publish(event_subject, jobs_encoder.encode(completed),
                                     headers={"Nats-Msg-Id": f"job-{ctx.job_id}"})
        result: dict[str, Any] = msgspec.to_builtins(completed)
        return result

    processor.handle_job(job_type, run_agent)
