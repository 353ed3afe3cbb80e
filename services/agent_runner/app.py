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
    RunAccepted,
    RunEvent,
    RunnerLease,
    RunQueued,
    RunStarted,
    RunState,
    is_run_id,
    run_request_decoder,
    runs_encoder,
)
from services.agent_runner.agents import load_catalog, load_stream_processor
from services.agent_runner.cancels import cancel_handler
from services.agent_runner.client_tools import check_client_tools, conversation
from services.agent_runner.decisions import Decisions
from services.agent_runner.demo import DEMO_MODEL, DemoModel
from services.agent_runner.engine import RunEngine, RunJob
from services.agent_runner.errors import BadRunRequest, duplicate_run, input_too_large, runner_draining
from services.agent_runner.handover import Handover
from services.agent_runner.limits import check_limits, retry_policy
from services.agent_runner.mcp import AgentMcp
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.outcomes import count_end, runner_stats
from services.agent_runner.pool import RunPool
from services.agent_runner.provider import ProviderPool
from services.agent_runner.restart import Restarter, run_state
from services.agent_runner.settings import AgentRunnerSettings
from services.agent_runner.writer import RunWriter
from shared.clients.jobs import JobsClient
from shared.errors import StreamingError
from shared.nats.conn import barrier
from shared.nats.jsacks import AckInbox
from shared.runs.approvals import ApprovalPolicy
from shared.runs.log import RunLog, run_stream_config
from shared.runs.registry import RunRegistry
from shared.runs.state import RunStateStore
from shared.service.app import App
from shared.tracing import genai, inject, trace_headers

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
        self.run_metrics.watch(self.pool)
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
        self._decide_sub: Subscription | None = None
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
                                 coalesce_window=s.delta_coalesce_ms / 1000 if s.delta_coalesce else None,
                                 approvals=ApprovalPolicy(self.catalog.approvals, deadline=s.approval_deadline,
                                                          outcome=s.approval_outcome))
        self._handover = Handover(self.nc, self.subjects, self.registry, self.runlog, self.pool, self.run_metrics,
                                  instance=self.instance, timeout=s.handover_timeout)
        self._restarter = Restarter(registry=self.registry, runlog=self.runlog, states=self.states,
                                    catalog=self.catalog, pool=self.pool, metrics=self.run_metrics,
                                    instance=self.instance, policy=lambda request: retry_policy(s, request))
        decisions = Decisions(nc=self.nc, registry=self.registry, runlog=self.runlog, states=self.states,
                              catalog=self.catalog, pool=self.pool, restarter=self.restarter, instance=self.instance,
                              max_restarts=s.max_restarts, policy=lambda request: retry_policy(s, request),
                              start=self._start_continued, jobs=JobsClient(self.nc, prefix=self.runtime.prefix))
        self.engine.on_park = decisions.park
        await self._renew_lease()  # alive before taking work, so no reaper mistakes our first runs for orphans
        self._request_sub = await self.nc.subscribe(self.subjects.run_requests, queue=QUEUE_GROUP,
                                                    cb=self._on_request, pending_msgs_limit=-1)
        on_cancel = cancel_handler(self.jobs, self.run_metrics, self._reply, decisions.cancel_parked)
        await self.nc.subscribe(self.subjects.run_cancel_all, cb=on_cancel)
        await self.nc.subscribe(self.subjects.run_agents, queue=QUEUE_GROUP, cb=self._on_agents_query)
        self._decide_sub = await self.nc.subscribe(self.subjects.run_decide, queue=QUEUE_GROUP,
                                                   cb=decisions.on_decide, pending_msgs_limit=-1)
        await barrier(self.nc)  # the server routes requests to us before start() returns
        self.spawn(self._heartbeat(), name="lease")
        self.spawn(self._reaper(), name="reaper")

    async def on_stop(self) -> None:
        """Stop taking runs, let running and queued ones finish, fail what cannot finish in time."""
        self.draining = True
        self._stopping.set()
        for sub in (self._request_sub, self._decide_sub):  # decisions go to the runners that stay
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
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
        check_limits(self.runner_settings, request)
        check_client_tools(request, agents)
        max_turns = request.max_turns or agent.max_turns or s.max_turns
        place = self.pool.admit()
        job = RunJob(request=request, agents=agents, writer=RunWriter(self.runlog, request.run_id),
                     timeout=request.timeout or s.timeout, max_turns=max_turns, place=place,
                     holds_slot=place is None, policy=retry_policy(self.runner_settings, request),
                     trace_headers=trace_headers(msg.headers))
        self.jobs[request.run_id] = job
        self.run_metrics.requests.labels(outcome="accepted").inc()
        return job, place

    def _run_state(self, job: RunJob) -> RunState | None:
        return run_state(job, self.states, self.runner_settings.max_restarts)

    async def _store_state(self, state: RunState | None) -> bool:
        return state is None or await self.states.create(state)

    async def _run(self, job: RunJob, place: asyncio.Future[None] | None, reply: str) -> None:
        """The run in its ``invoke_agent`` span, a child of the span that requested it."""
        with genai.agent_run(job.trace_headers, run_id=job.run_id, agent=job.request.agent,
                             handover=job.request.handover_from is not None) as span:
            job.span = span
            job.writer.trace = inject()  # every event of the run carries the run span's context
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
                claimed = await self.handover.accept(job, self._run_state(job), self.states,
                                                     lambda answer: self._reply(reply, answer))
                if claimed:
                    job.task = asyncio.current_task()
                    count_end(self.run_metrics, job, await self.engine.execute(job))
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
            count_end(self.run_metrics, job, terminal)
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
            if claimed and not job.handed_over and not job.parked:
                await self.restarter.close(run_id)

    async def _continue(self, job: RunJob) -> None:
        """Execute a run taken over from a runner that died (in a span continuing its trace), then clean up."""
        try:
            job.task = asyncio.current_task()
            with genai.agent_run(job.writer.trace, run_id=job.run_id, agent=job.request.agent, restart=True,
                                 decision=job.trace_headers if job.decided else None) as span:
                job.span = span
                job.writer.trace = inject() or job.writer.trace
                count_end(self.run_metrics, job, await self.engine.execute(job))
        except Exception:
            self.log.exception("restarted run %s failed", job.run_id)
        finally:
            self.jobs.pop(job.run_id, None)
            if job.holds_slot:
                self.pool.release()
            elif job.place is not None:
                self.pool.withdraw(job.place)
            if not job.handed_over and not job.parked:
                await self.restarter.close(job.run_id)

    def _start_continued(self, job: RunJob) -> None:
        """Execute a run continued here (a decision was taken on it, or its runner died)."""
        self.jobs[job.run_id] = job
        job.lifecycle = job.task = self.spawn(self._continue(job), name=f"continue:{job.run_id}")

    def stats(self) -> dict[str, Any]:
        """The seed's ``AsyncRunner`` figures for ``raaf.stats()``."""
        return runner_stats(self.run_metrics, self.pool, running=not self.draining)

    async def _reply(self, target: Msg | str, message: msgspec.Struct) -> None:
        reply = target.reply if isinstance(target, Msg) else target
        if reply:
            with contextlib.suppress(Exception):
                await self.nc.publish(reply, runs_encoder.encode(message))

    # ---- queries ---------------------------------------------------------------------------------------

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
        """Continue (or fail) the open runs whose runner holds no lease; how many were failed."""
        return await self.restarter.sweep(self.jobs, self._start_continued)
