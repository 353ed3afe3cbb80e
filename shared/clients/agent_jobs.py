"""``PlatformAgentRunner``: runs a ``run_agent`` job's agent on the platform's agent-runners, over NATS."""

from __future__ import annotations

import contextlib

import msgspec
from nats.aio.client import Client as NATS

from proto.errors import Error, ErrorCode
from proto.runs import RunCancelled, RunCompleted, RunFailed, RunRequest
from proto.subjects import Subjects
from shared.clients.runs import RunClient
from shared.errors import error_for, error_from_wire
from shared.jobs.agent_job import AgentOutput


class PlatformAgentRunner:
    """Runs agents on the platform's agent-runners over ``nc``: the run request, then the run log to its end."""

    def __init__(self, nc: NATS, *, prefix: str = "raaf", request_timeout: float = 5.0) -> None:
        self.nc = nc
        self.prefix = prefix
        self.request_timeout = request_timeout

    async def run_agent(self, agent: str, input: str, *, run_id: str, metadata: dict[str, str],
                        timeout: float | None, owner: str | None = None,
                        max_turns: int | None = None) -> AgentOutput:
        client = RunClient(self.nc, self.nc.jetstream(), Subjects(self.prefix), request_timeout=self.request_timeout)
        reply = await client.start(RunRequest(run_id=run_id, agent=agent, input=input, timeout=timeout,
                                              metadata=metadata, owner=owner, max_turns=max_turns))
        if isinstance(reply, Error):
            raise error_from_wire(reply)
        async with contextlib.aclosing(client.follow(run_id)) as events:
            async for event, _ in events:
                match event:
                    case RunCompleted():
                        usage = msgspec.to_builtins(event.usage)
                        counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
                        return AgentOutput(output=event.output, agent=event.agent, run_id=run_id, usage=counts)
                    case RunFailed(code=code, message=message):
                        raise error_for(code, message, ref=run_id)
                    case RunCancelled(reason=reason):
                        raise error_for(ErrorCode.CANCELLED, reason, ref=run_id)
        raise error_for(ErrorCode.INTERNAL, "the run log ended without a terminal event", ref=run_id)
