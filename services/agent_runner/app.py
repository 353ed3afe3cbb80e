"""The agent-runner service: takes run requests from a NATS queue group and streams each run's events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import StreamConfig

from proto.errors import Error, ErrorCode
from proto.runs import (
    AgentList,
    CancelAccepted,
    RunAccepted,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunnerLease,
    RunQueued,
    RunRequest,
    RunStarted,
    RunState,
    cancel_run_decoder,
    is_run_id,
    run_request_decoder,
    runs_encoder,
)
from proto.subjects import decode_token
from services.agent_runner.agents import load_catalog, load_stream_processor
from services.agent_runner.client_tools import check_client_tools, conversation
from services.agent_runner.demo import DEMO_MODEL, DemoModel
from services.agent_runner.engine import RunEngine, RunJob
from services.agent_runner.errors import BadRunRequest, duplicate_run, input_too_large, runner_draining
from services.agent_runner.handover import Handover
from services.agent_runner.mcp import AgentMcp
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.pool import RunPool
from services.agent_runner.provider import ProviderPool, RetryPolicy
from services.agent_runner.restart import Restarter, run_state
from services.agent_runner.settings import AgentRunnerSettings
from services.agent_runner.writer import RunWriter
from shared.errors import StreamingError
from shared.nats.conn import barrier
from shared.nats.jsacks import AckInbox
from shared.runs.log import RunLog, run_stream_config
from shared.runs.registry import RunRegistry
from shared.runs.state import RunStateStore
from shared.service.app import App
from shared.tracing import genai, trace_headers

QUEUE_GROUP = "agent-runner"


class AgentRunnerApp(App):
    service: ClassVar[str] = "agent-runner"

    def __init__(self, settings: AgentRunnerSettings) -> None:
        super().__init__(settings)
        self.runner_settings = settings
        self.instance = self.runtime.instance_id
        self.catalog = load_catalog(settings)
        self.mcp = AgentMcp.from_settings(self.catalog, settings)
        self.processor = load_stream_processor(settings)
        self.run_metrics = RunnerMetrics(self.metrics.registry)
        self.pool = RunPool(settings.pool_size, settings.queue_size)
        self.run_metrics.pool_size.set(settings.pool_size)
        self.run_metrics.queue_size.set(settings.queue_size)
        self.run_metrics.active.set_function(lambda: float(self.pool.active))
        self.run_metrics.queued.set_function(lambda: float(self.pool.queued))
        self.jobs: dict[str, RunJob] = {}
        self.draining = False
        self._stopping = asyncio.Event()
        self.demo: DemoModel | None = DemoModel(settings.demo_token_delay) if settings.demo else None
        self.default_model = DEMO_MODEL if settings.demo else settings.default_model
        self._runlog: RunLog | None = None
        self._registry: RunRegistry | None = None
        self._providers: ProviderPool | None = None
        self._engine: RunEngine | None = None
        self._handover: Handover | None = None
        self._states: RunStateStore | None = None
        self._restarter: Restarter | None = None
        self._request_sub: Subscription | None = None
        self._acks: AckInbox | None = None

    def streams(self) -> list[StreamConfig]:
        s = self.runner_settings
        return [run_stream_config(self.subjects, max_age=s.events_max_age, replicas=self.runtime.jetstream_replicas,
                                  max_bytes=s.events_max_bytes)]

    def micro_metadata(self) -> dict[str, str]:
        return {"agents": ",".join(sorted(self.catalog.agents)), "demo": str(self.demo is not None).lower()}

    @property
    def runlog(self) -> RunLog:
        assert self._runlog is not None
        return self._runlog

    @property
    def registry(self) -> RunRegistry:
        assert self._registry is not None
        return self._registry

    @property
    def states(self) -> RunStateStore:
        assert self._states is not None
        return self._states

    @property
    def restarter(self) -> Restarter:
        assert self._restarter is not None
        return self._restarter

    @property
    def handover(self) -> Handover:
        assert self._handover is not None
        return self._handover

    @property
    def engine(self) -> RunEngine:
        assert self._engine is not None
        return self._engine

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def on_start(self) -> None:
        s = self.runner_settings
        self._acks = AckInbox(self.nc)
        await self._acks.start()
        self._runlog = RunLog(self.nc, self.js, self.subjects, acks=self._acks)
        self._registry = RunRegistry(self.js, self.subjects)
        await self.registry.provision(lease_ttl=s.lease_ttl, open_ttl=s.events_max_age,
                                      replicas=self.runtime.jetstream_replicas)
        self._states = RunStateStore(self.js, self.subjects)
        await self.states.provision(ttl=s.events_max_age, replicas=self.runtime.jetstream_replicas)
        demo_url = await self.demo.start() if self.demo is not None else None
        self._providers = ProviderPool(api_key=s.openai_api_key, base_url=s.openai_base_url, demo_url=demo_url,
                                       max_connections=s.provider_max_connections, timeout=s.max_timeout,
                                       raw_post=s.provider_raw_post)
        await self.mcp.start()
        self._engine = RunEngine(providers=self._providers, tools=self.catalog.tools,
                                 default_model=self.default_model, max_tool_output_bytes=s.max_tool_output_bytes,
                                 metrics=self.run_metrics, instance=self.instance, demo=self.demo is not None,
                                 processor=self.processor, agent_tools=self.mcp.tools_for, chunk_size=s.chunk_size,
                                 coalesce_window=s.delta_coalesce_ms / 1000 if s.delta_coalesce else None)
        self._handover = Handover(self.nc, self.subjects, self.registry, self.runlog, self.pool, self.run_metrics,
                                  instance=self.instance, timeout=s.handover_timeout)
        self._restarter = Restarter(registry=self.registry, runlog=self.runlog, states=self.states,
                                    catalog=self.catalog, pool=self.pool, metrics=self.run_metrics,
                                    instance=self.instance, policy=self._policy)
        await self._renew_lease()  # alive before taking work, so no reaper mistakes our first runs for orphans
        self._request_sub = await self.nc.subscribe(self.subjects.run_requests, queue=QUEUE_GROUP,
                                                    cb=self._on_request, pending_msgs_limit=-1)
        await self.nc.subscribe(self.subjects.run_cancel_all, cb=self._on_cancel)
        await self.nc.subscribe(self.subjects.run_agents, queue=QUEUE_GROUP, cb=self._on_agents_query)
        await barrier(self.nc)  # the server routes requests to us before start() returns
        self.spawn(self._heartbeat(), name="lease")
        self.spawn(self._reaper(), name="reaper")

    async def on_stop(self) -> None:
        """Stop taking runs, let running and queued ones finish, fail what cannot finish in time."""
        self.draining = True
        self._stopping.set()
        if self._request_sub is not None:
            with contextlib.suppress(Exception):
                await self._request_sub.unsubscribe()
        budget = max(0.5, self.runtime.shutdown_timeout - 3.0)
        started = time.monotonic()
        if self.runner_settings.handover:
            await self.handover.hand_over_queued(list(self.jobs.values()))
        budget = max(0.5, budget - (time.monotonic() - started))
        tasks = [job.lifecycle for job in self.jobs.values() if job.lifecycle is not None]
        if tasks:
            self.log.info("draining %d runs", len(tasks), extra={"budget_seconds": budget})
            _, pending = await asyncio.wait(tasks, timeout=budget)
            for job in list(self.jobs.values()):
                if job.lifecycle in pending:
                    job.shutdown_reason = "the agent-runner was shut down before the run finished"
                    if job.task is not None:
                        job.task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.5)
        with contextlib.suppress(Exception):
            await self.registry.release(self.instance)
        if self._acks is not None:
            await self._acks.stop()
        if self._providers is not None:
            await self._providers.close()
        await self.mcp.stop()
        if self.demo is not None:
            await self.demo.stop()

    # ---- run requests ------------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        try:
            job, place = self._admit(msg)
        except StreamingError as exc:
            self.run_metrics.requests.labels(outcome=exc.code.value).inc()
            await self._reply(msg, exc.to_wire())
            return
        job.lifecycle = job.task = self.spawn(self._run(job, place, msg.reply), name=f"run:{job.run_id}")

    def _admit(self, msg: Msg) -> tuple[RunJob, asyncio.Future[None] | None]:
        """Validate and take a pool slot or queue place, synchronously: overload is answered at once."""
        s = self.runner_settings
        if self.draining:
            raise runner_draining()
        if len(msg.data) > s.max_input_bytes:
            raise input_too_large(len(msg.data), s.max_input_bytes)
        try:
            request = run_request_decoder.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRunRequest(f"malformed run request: {exc}") from None
        if not is_run_id(request.run_id):
            raise BadRunRequest("run_id must be 1-64 letters, digits, '_' or '-'")
        if request.run_id in self.jobs:
            raise duplicate_run(request.run_id)
        agents = self.catalog.resolve(request)
        agent = agents[request.agent]
        self._check_limits(request)
        check_client_tools(request, agents)
        max_turns = request.max_turns or agent.max_turns or s.max_turns
        place = self.pool.admit()
        job = RunJob(request=request, agents=agents, writer=RunWriter(self.runlog, request.run_id),
                     timeout=request.timeout or s.timeout, max_turns=max_turns, place=place,
                     holds_slot=place is None, policy=self._policy(request),
                     trace_headers=trace_headers(msg.headers))
        self.jobs[request.run_id] = job
        self.run_metrics.requests.labels(outcome="accepted").inc()
        return job, place

    def _policy(self, request: RunRequest) -> RetryPolicy:
        s = self.runner_settings
        retry_count = s.retry_count if request.retry_count is None else request.retry_count
        retry_delay = s.retry_delay if request.retry_delay is None else request.retry_delay
        return RetryPolicy(retry_count, retry_delay, s.retry_max_delay)

    def _run_state(self, job: RunJob) -> RunState | None:
        return run_state(job, self.states, self.runner_settings.max_restarts)

    async def _store_state(self, state: RunState | None) -> bool:
        return state is None or await self.states.create(state)

    def _check_limits(self, request: RunRequest) -> None:
        s = self.runner_settings
        if request.timeout is not None and not 0 < request.timeout <= s.max_timeout:
            raise BadRunRequest(f"timeout must be within (0, {s.max_timeout:g}] seconds (RUN_MAX_TIMEOUT)")
        if request.retry_count is not None and not 0 <= request.retry_count <= s.max_retry_count:
            raise BadRunRequest(f"retry_count must be within 0..{s.max_retry_count} (RUN_MAX_RETRY_COUNT)")
        if request.retry_delay is not None and not 0 <= request.retry_delay <= s.retry_max_delay:
            raise BadRunRequest(f"retry_delay must be within 0..{s.retry_max_delay:g} (RUN_RETRY_MAX_DELAY)")
        if request.max_turns is not None and not 1 <= request.max_turns <= s.max_turns:
            raise BadRunRequest(f"max_turns must be within 1..{s.max_turns} (RUN_MAX_TURNS)")

    async def _run(self, job: RunJob, place: asyncio.Future[None] | None, reply: str) -> None:
        """The run in its ``invoke_agent`` span, a child of the span that requested it."""
        with genai.agent_run(job.trace_headers, run_id=job.run_id, agent=job.request.agent,
                             handover=job.request.handover_from is not None) as span:
            job.span = span
            await self._execute(job, place, reply)

    async def _execute(self, job: RunJob, place: asyncio.Future[None] | None, reply: str) -> None:
        """Claim the run id cluster-wide and store its first event (while the model is already being asked,
        when a slot is free), answer the requester, run to the end, clean up."""
        run_id = job.run_id
        agent = job.agents[job.request.agent]
        claimed = False
        engine: asyncio.Task[RunEvent | None] | None = None
        first: Awaitable[RunEvent]
        try:
            if job.request.handover_from is not None:
                claimed = await self._take_over(job, reply)
                if claimed:
                    job.task = asyncio.current_task()
                    self._count_end(job, await self.engine.execute(job))
                return
            if place is None:
                # The first model request overlaps the claim; the run's own events wait for the gate.
                gate = job.writer.gate = asyncio.get_running_loop().create_future()
                engine = asyncio.create_task(self.engine.execute(job), name=f"{self.service}:engine:{run_id}")
                job.task = engine
                first = job.writer.emit(RunStarted, first=True, agent=agent.name, model=self.engine.model_of(agent),
                                        instance=self.instance, demo=self.demo is not None, owner=job.request.owner,
                                        room=job.request.room,
                                        **conversation(job.request))
            else:
                first = job.writer.emit(RunQueued, first=True, agent=agent.name, instance=self.instance,
                                        owner=job.request.owner, room=job.request.room,
                                        **conversation(job.request))
            state = self._run_state(job)
            claim, stored, kept = await asyncio.gather(self.registry.claim(run_id, self.instance), first,
                                                       self._store_state(state), return_exceptions=True)
            claimed = claim is True
            if kept is True and state is not None and not claimed:
                with contextlib.suppress(Exception):
                    await self.states.delete(run_id)  # the state of a run that is not ours to keep
            if isinstance(kept, BaseException):
                self.log.warning("cannot store the state of run %s: it cannot be restarted", run_id,
                                 extra={"error": str(kept)})
            if isinstance(claim, BaseException) or isinstance(stored, BaseException) or not claimed:
                if engine is not None:
                    job.writer.gate.set_result(False)  # type: ignore[union-attr]
                    await asyncio.gather(engine, return_exceptions=True)
                error = (stored if isinstance(stored, StreamingError)
                         else duplicate_run(run_id) if claim is False else None)
                if error is None:
                    raise next(e for e in (claim, stored) if isinstance(e, BaseException))
                await self._reply(reply, error.to_wire(ref=run_id))
                self.run_metrics.requests.labels(outcome=error.code.value).inc()
                return
            await self._reply(reply, RunAccepted(run_id=run_id, instance=self.instance, queued=place is not None))
            job.accepted = True
            if engine is not None:
                gate.set_result(True)
                terminal = await engine
            else:
                job.task = asyncio.current_task()
                terminal = await self.engine.execute(job)
            self._count_end(job, terminal)
        except Exception:
            self.log.exception("run %s could not start", run_id)
            await self._reply(reply, Error(code=ErrorCode.INTERNAL, message="the run could not start", ref=run_id))
        finally:
            if engine is not None and not engine.done():
                engine.cancel()
                await asyncio.gather(engine, return_exceptions=True)
            self.jobs.pop(run_id, None)
            if job.holds_slot:
                self.pool.release()
            elif place is not None:
                self.pool.withdraw(place)
            if claimed and not job.handed_over:
                await self.restarter.close(run_id)

    async def _continue(self, job: RunJob) -> None:
        """Execute a run taken over from a runner that died, then clean up."""
        try:
            job.task = asyncio.current_task()
            self._count_end(job, await self.engine.execute(job))
        except Exception:
            self.log.exception("restarted run %s failed", job.run_id)
        finally:
            self.jobs.pop(job.run_id, None)
            if job.holds_slot:
                self.pool.release()
            elif job.place is not None:
                self.pool.withdraw(job.place)
            if not job.handed_over:
                await self.restarter.close(job.run_id)

    async def _take_over(self, job: RunJob, reply: str) -> bool:
        """Become the owner of a run a draining runner offered; answer the offer either way."""
        try:
            await self.handover.take_over(job)
        except StreamingError as exc:
            self.run_metrics.requests.labels(outcome=exc.code.value).inc()
            await self._reply(reply, exc.to_wire(ref=job.run_id))
            return False
        state = self._run_state(job)  # its timeout starts again here
        if state is not None:
            with contextlib.suppress(Exception):
                await self.states.put(state)
        await self._reply(reply, RunAccepted(run_id=job.run_id, instance=self.instance, queued=job.place is not None))
        job.accepted = True
        return True

    def _count_end(self, job: RunJob, terminal: RunEvent | None) -> None:
        if job.handed_over:
            return  # counted by the runner that finishes it
        m = self.run_metrics
        m.events.inc(job.writer.seq)
        m.duration.observe(time.monotonic() - job.accepted_at)
        match terminal:
            case RunCompleted(usage=usage):
                genai.record_outcome(job.span, "completed", input_tokens=usage.prompt_tokens,
                                     output_tokens=usage.completion_tokens)
                m.runs.labels(outcome="completed").inc()
                m.completed += 1
                m.tokens.labels(kind="prompt").inc(usage.prompt_tokens)
                m.tokens.labels(kind="completion").inc(usage.completion_tokens)
            case RunFailed(code=code):
                genai.record_outcome(job.span, "failed", code=code.value)
                m.runs.labels(outcome="failed").inc()
                m.failures.labels(code=code.value).inc()
                m.failed += 1
            case RunCancelled():
                genai.record_outcome(job.span, "cancelled")
                m.runs.labels(outcome="cancelled").inc()
                m.cancelled += 1

    def stats(self) -> dict[str, Any]:
        """The seed's ``AsyncRunner`` figures for ``raaf.stats()``."""
        m = self.run_metrics
        return {"async_runner": {
            "running": not self.draining, "active_runs": self.pool.active, "queued": self.pool.queued,
            "completed": m.completed, "failed": m.failed, "cancelled": m.cancelled,
            "pool_size": self.pool.pool_size, "queue_size": self.pool.queue_size}}

    async def _reply(self, target: Msg | str, message: msgspec.Struct) -> None:
        reply = target.reply if isinstance(target, Msg) else target
        if reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(reply, runs_encoder.encode(message))

    # ---- cancel and queries ------------------------------------------------------------------------------

    async def _on_cancel(self, msg: Msg) -> None:
        run_id = decode_token(msg.subject.rsplit(".", 1)[-1])
        job = self.jobs.get(run_id)
        if job is None or not is_run_id(run_id):
            return  # not ours: the runner owning it answers
        reason = "cancelled"
        if msg.data:
            try:
                reason = cancel_run_decoder.decode(msg.data).reason
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._reply(msg, Error(code=ErrorCode.BAD_REQUEST, message=f"malformed cancel: {exc}",
                                             ref=run_id))
                return
        self.run_metrics.cancels.inc()
        if job.cancel_reason is None:
            job.cancel_reason = reason  # a run not accepted yet sees it before its first step
            if job.accepted and job.task is not None:
                job.task.cancel()
        await self._reply(msg, CancelAccepted(run_id=run_id))

    async def _on_agents_query(self, msg: Msg) -> None:
        agents = [msgspec.structs.replace(a, base_url=None, api_key_env=None, tools=[*a.tools, *self.mcp.tools_for(a)])
                  for a in self.catalog.agents.values()]
        await self._reply(msg, AgentList(agents=agents, demo=self.demo is not None))

    # ---- leases and orphans ------------------------------------------------------------------------------

    async def _renew_lease(self) -> None:
        s = self.runner_settings
        lease = RunnerLease(instance=self.instance, at=time.time(), ttl=s.lease_ttl, runs=sorted(self.jobs))
        await self.registry.renew(self.instance, runs_encoder.encode(lease))

    async def _heartbeat(self) -> None:
        while not await self._stopping_within(self.runner_settings.lease_ttl / 3):
            try:
                await self._renew_lease()
            except Exception as exc:
                self.log.warning("cannot renew the runner lease: %s", exc)

    async def _reaper(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                self.log.warning("orphan sweep failed: %s", exc)
            if await self._stopping_within(self.runner_settings.lease_ttl / 2):
                return

    async def _stopping_within(self, seconds: float) -> bool:
        """Wait ``seconds``; True as soon as the runner stops. The loops end on this flag, not only on
        cancellation, which Python 3.11's ``wait_for`` (inside nats-py) can swallow."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def sweep(self) -> int:
        """Continue every open run whose runner holds no lease (it was killed) here, or fail it if it cannot be
        restored; return how many were failed."""
        alive: dict[str, bool] = {self.instance: True}
        failed = 0
        for run_id, owner in (await self.registry.open()).items():
            if owner == self.instance and run_id in self.jobs:
                continue
            if owner not in alive:
                alive[owner] = await self.registry.alive(owner)
            if alive[owner] and owner != self.instance:
                continue
            self.log.info("run %s of %s is orphaned", run_id, owner)
            taken = await self.restarter.take(run_id, owner)
            if isinstance(taken, RunJob):
                self.jobs[run_id] = taken
                taken.lifecycle = taken.task = self.spawn(self._continue(taken), name=f"restart:{run_id}")
                continue
            if taken:
                continue
            message = f"the agent-runner running this run ({owner}) stopped before it finished"
            if await self.runlog.fail(run_id, ErrorCode.UNAVAILABLE, message) is not None:
                failed += 1
                self.run_metrics.reaped.inc()
                self.log.warning("failed orphaned run %s", run_id, extra={"owner": owner})
            await self.restarter.forget(run_id)
        return failed
