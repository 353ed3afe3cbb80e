"""The agent loop of one run: stream a turn, run its tool calls, follow handoffs, until a final answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import msgspec
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.trace import Span

from proto.errors import ErrorCode
from proto.runs import (
    AgentChanged,
    AgentSpec,
    Handoff,
    RunCancelled,
    RunCompleted,
    RunEvent,
    RunFailed,
    RunRequest,
    RunStarted,
    TextDelta,
    ToolCallDelta,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    ToolOutput,
    Usage,
    handoff_tool_name,
)
from services.agent_runner.approval_gate import ApprovalGate, Decided, RunParked, with_arguments
from services.agent_runner.client_tools import client_tool_schema, model_options
from services.agent_runner.deltas import DeltaCoalescer, processed
from services.agent_runner.errors import (
    is_superseded,
    max_turns_exceeded,
    run_timed_out,
)
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.provider import (
    CallArguments,
    CallStart,
    PendingCall,
    ProviderPool,
    RetryPolicy,
    TextPiece,
    TurnEnd,
    stream_turn,
)
from services.agent_runner.tool_calls import ToolCaller, progress_sinks
from services.agent_runner.writer import RunWriter
from shared.errors import ConflictError, StreamingError
from shared.runs.approvals import ApprovalPolicy
from shared.runs.checkpoint import (
    Checkpoint,
    handoff_output,
    ignored_handoff_output,
    opening_messages,
    switch_instructions,
)
from shared.runs.stream_processor import StreamProcessor
from shared.runs.tools import Tool
from shared.tracing import TRACING, genai

log = logging.getLogger("raaf.agent-runner.engine")
# How long the terminal event may take to store after a cancel, timeout or failure (JetStream reconnecting).
TERMINAL_PATIENCE: Final = 30.0


@dataclass(eq=False)
class RunJob:
    """One accepted run: what was asked, the agents it may use, its deadline and how it is being stopped."""

    request: RunRequest
    agents: Mapping[str, AgentSpec]
    writer: RunWriter
    timeout: float
    max_turns: int
    policy: RetryPolicy
    accepted_at: float = field(default_factory=time.monotonic)
    place: asyncio.Future[None] | None = None  # a queue place to wait on before starting (None: started)
    holds_slot: bool = False  # whether the run holds a pool slot the runner must give back
    cancel_reason: str | None = None  # set by a cancel request before the task is cancelled
    shutdown_reason: str | None = None  # set when the runner stops before the run could finish
    task: asyncio.Task[Any] | None = None  # the task executing the run: what a cancel cancels
    lifecycle: asyncio.Task[Any] | None = None  # the task that accepts, executes and cleans up the run
    accepted: bool = False  # the requester was told; from now on a cancel cancels ``task``
    handed_over: bool = False  # a draining runner gave this queued run to another: end it without an event
    last_text: float | None = None  # when the last text delta was stored (inter-token metric)
    trace_headers: dict[str, str] | None = None  # the run request's trace context (None while tracing is off)
    span: Span | None = None  # the run's span (None while tracing is off)
    resume: Checkpoint | None = None  # continuing a run whose runner died: its state after the last step
    usage: Usage = field(default_factory=Usage)  # tokens used before this runner took the run
    on_turn: Callable[[int, Usage], Awaitable[None]] | None = None  # a model turn ended (usage so far)
    parked: bool = False  # the run waits for approval decisions: no runner holds it (do not close it)
    decided: bool = False  # continued by a decision: no call of its tool phase had started

    @property
    def run_id(self) -> str:
        return self.request.run_id

    def stop_if_asked(self) -> None:
        """Raise ``CancelledError`` once a cancel or shutdown was asked for. ``task.cancel()`` alone is not
        enough: Python 3.11's ``wait_for`` (inside nats-py's publish) swallows a cancel that lands just as
        its future completes, and the run would go on."""
        if self.cancel_reason is not None or self.shutdown_reason is not None:
            raise asyncio.CancelledError()


class RunEngine:
    """Executes runs; every outcome ends in exactly one terminal event (completed, failed or cancelled)."""

    def __init__(self, *, providers: ProviderPool, tools: Mapping[str, Tool], default_model: str,
                 max_tool_output_bytes: int, metrics: RunnerMetrics, instance: str, demo: bool,
                 processor: StreamProcessor | None = None,
                 agent_tools: Callable[[AgentSpec], Mapping[str, Tool]] | None = None,
                 coalesce_window: float | None = None, chunk_size: int = 1024,
                 approvals: ApprovalPolicy | None = None) -> None:
        self.instance = instance
        # more tools of an agent, asked each turn (its MCP servers' tools)
        self.caller = ToolCaller(tools=tools, metrics=metrics, max_tool_output_bytes=max_tool_output_bytes,
                                 agent_tools=agent_tools)
        self.gate = ApprovalGate(approvals or ApprovalPolicy())
        self.on_park: Callable[[RunJob, RunParked], Awaitable[None]] | None = None  # make a park durable
        # RUN_DELTA_COALESCE(_MS): None stores each delta before reading the next; a number coalesces.
        self.coalesce_window = coalesce_window
        self.chunk_size = chunk_size
        self.processor = processor  # RAAF_STREAM_PROCESSOR: applied to every text delta before it is stored
        self.demo = demo
        self.providers = providers
        self.default_model = default_model
        self.metrics = metrics

    def model_of(self, agent: AgentSpec) -> str:
        return agent.model or self.default_model

    async def execute(self, job: RunJob) -> RunEvent | None:
        """Run to the end and return the terminal event (None if another writer ended the run first)."""
        if job.cancel_reason is not None:  # cancelled before it was accepted
            return await self._end(job, RunCancelled, reason=job.cancel_reason)
        try:
            return await self._execute(job)
        finally:
            if self.processor is not None:
                self.processor.end_stream(job.run_id)

    async def _execute(self, job: RunJob) -> RunEvent | None:
        try:
            try:
                async with asyncio.timeout(max(0.0, job.accepted_at + job.timeout - time.monotonic())) as scope:
                    return await self._turns(job)
            except TimeoutError:
                if not scope.expired():
                    raise
                raise run_timed_out(job.timeout) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if job.handed_over:
                return None  # another runner owns the run now and writes its events
            if job.cancel_reason is not None:
                return await self._end(job, RunCancelled, reason=job.cancel_reason)
            reason = job.shutdown_reason or "the agent-runner stopped before the run finished"
            return await self._end(job, RunFailed, code=ErrorCode.UNAVAILABLE, message=reason)
        except RunParked as parked:
            return await self._park(job, parked)
        except StreamingError as exc:
            if is_superseded(exc):
                log.warning("run %s was ended by another process", job.run_id)
                return None
            return await self._end(job, RunFailed, code=exc.code, message=exc.message)
        except Exception as exc:
            log.exception("run %s failed", job.run_id)
            return await self._end(job, RunFailed, code=ErrorCode.INTERNAL, message=f"internal error: {exc}")

    async def _park(self, job: RunJob, parked: RunParked) -> RunEvent | None:
        """The run waits for decisions: record that durably and let it go (None), or fail it if it cannot."""
        try:
            if self.on_park is None:
                raise RuntimeError("this runner keeps no run state")
            await self.on_park(job, parked)
        except Exception as exc:
            log.exception("run %s cannot wait for its approvals", job.run_id)
            return await self._end(job, RunFailed, code=ErrorCode.UNAVAILABLE,
                                   message=f"the run cannot wait for approval: {exc}")
        job.parked = True
        return None

    async def _end(self, job: RunJob, kind: type[RunCancelled] | type[RunFailed], **fields: Any) -> RunEvent | None:
        try:
            return await job.writer.emit(kind, patience=TERMINAL_PATIENCE, **fields)
        except ConflictError as exc:
            if not is_superseded(exc):
                raise
            return None

    async def _turns(self, job: RunJob) -> RunEvent:
        request, writer = job.request, job.writer
        agent = job.agents[request.agent]
        if job.place is not None:
            await job.place
            job.holds_slot = True
        resume = job.resume
        usage = job.usage
        if resume is None and (job.place is not None or request.handover_from is not None):
            await writer.emit(RunStarted, agent=agent.name, model=self.model_of(agent), instance=self.instance,
                              demo=self.demo)
        if resume is None:
            messages = cast(list[ChatCompletionMessageParam], opening_messages(request, agent))
            done = 0
        else:  # continuing a run whose runner died: from its last completed step
            agent = job.agents[resume.agent]
            messages = cast(list[ChatCompletionMessageParam], resume.messages)
            done = resume.turns
            if resume.calls is not None:
                calls = [PendingCall(id=c.id, name=c.name, arguments=[c.arguments]) for c in resume.calls]
                agent = await self._tool_phase(job, agent, calls, messages, resume, usage, done)
        client_tools = {tool.name for tool in request.client_tools}
        for turn in range(done + 1, job.max_turns + 1):
            job.stop_if_asked()
            end = await self._traced_turn(job, agent, messages, turn)
            if end.usage is not None:
                usage = Usage(prompt_tokens=usage.prompt_tokens + end.usage.prompt_tokens,
                              completion_tokens=usage.completion_tokens + end.usage.completion_tokens,
                              total_tokens=usage.total_tokens + end.usage.total_tokens)
            if not end.calls:
                return await writer.emit(RunCompleted, agent=agent.name, output=end.text, usage=usage, turns=turn,
                                         patience=TERMINAL_PATIENCE, truncated=end.finish_reason == "length")
            if job.on_turn is not None:
                await job.on_turn(turn, usage)
            for call in end.calls:
                await writer.emit(ToolCallFinished, call_id=call.id, name=call.name, arguments=call.arguments_json)
            messages.append({
                "role": "assistant", "content": end.text or None,
                "tool_calls": [{"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments_json}} for c in end.calls],
            })
            client_calls = [call for call in end.calls if call.name in client_tools]
            server_calls = [call for call in end.calls if call.name not in client_tools]
            if client_calls:  # the client runs these: the run ends with them, the client's next request continues
                await self._run_calls(job, agent, server_calls, messages, None,
                                      await self._decisions(job, agent, server_calls, None, usage, turn))
                job.stop_if_asked()
                return await writer.emit(
                    RunCompleted, agent=agent.name, output=end.text, usage=usage, turns=turn,
                    patience=TERMINAL_PATIENCE, client_calls=[
                        ToolCallRecord(call_id=c.id, name=c.name, arguments=c.arguments_json) for c in client_calls])
            agent = await self._tool_phase(job, agent, server_calls, messages, None, usage, turn)
        raise max_turns_exceeded(job.max_turns)

    async def _decisions(self, job: RunJob, agent: AgentSpec, calls: list[PendingCall], resume: Checkpoint | None,
                         usage: Usage, turns: int) -> dict[str, Decided]:
        """The approval decisions on a turn's calls; ``RunParked`` while any call waits for one."""
        return await self.gate.check(job.writer, agent, job.request.owner, calls, self.caller.tools_of(agent),
                                     resume, usage=usage, turns=turns)

    async def _tool_phase(self, job: RunJob, agent: AgentSpec, calls: list[PendingCall],
                          messages: list[ChatCompletionMessageParam], resume: Checkpoint | None, usage: Usage,
                          turns: int) -> AgentSpec:
        """Run a turn's tool calls (once approved) and follow its handoff; the agent that takes the next turn."""
        decisions = await self._decisions(job, agent, calls, resume, usage, turns)
        target = await self._run_calls(job, agent, calls, messages, resume, decisions)
        job.stop_if_asked()
        if target is None:
            return agent
        previous, agent = agent, job.agents[target]
        switch_instructions(cast(list[dict[str, Any]], messages), agent)
        await job.writer.emit(AgentChanged, agent=agent.name, previous=previous.name, model=self.model_of(agent))
        return agent

    async def _traced_turn(self, job: RunJob, agent: AgentSpec, messages: list[ChatCompletionMessageParam],
                           turn: int) -> TurnEnd:
        """One model turn in its ``chat <model>`` span (none while tracing is off)."""
        if not TRACING.on:
            return await self._turn(job, agent, messages, turn)
        with genai.model_turn(agent=agent.name, model=self.model_of(agent), turn=turn,
                              base_url=self.providers.endpoint(agent)[0]) as span:
            assert span is not None
            end = await self._turn(job, agent, messages, turn, span)
            span.end(finish_reason=end.finish_reason, calls=len(end.calls),
                     input_tokens=None if end.usage is None else end.usage.prompt_tokens,
                     output_tokens=None if end.usage is None else end.usage.completion_tokens)
            return end

    async def _turn(self, job: RunJob, agent: AgentSpec, messages: list[ChatCompletionMessageParam], turn: int,
                    span: genai.ModelTurn | None = None) -> TurnEnd:
        """Stream one model turn into events; return how it ended (its text, tool calls, usage)."""
        writer, request = job.writer, job.request
        shown: list[str] = []  # the turn's text as stored, after the stream processor
        tools = self.caller.schemas(agent, job.agents) + [client_tool_schema(t) for t in request.client_tools]
        asked = agent if request.max_output_tokens is None else msgspec.structs.replace(
            agent, max_tokens=request.max_output_tokens)
        pieces = stream_turn(self.providers.client(agent), model=self.model_of(agent), messages=messages,
                             tools=tools, agent=asked, policy=job.policy, on_retry=self.metrics.retries.inc,
                             options=model_options(request, turn, has_tools=bool(tools)),
                             raw_post=self.providers.raw_post)
        coalescer = None if self.coalesce_window is None else DeltaCoalescer(
            writer, agent.name, window=self.coalesce_window, max_chars=self.chunk_size,
            on_stored=lambda: self._text_stored(job))
        try:
            # aclosing: a cancel that lands while an event is being stored (outside the generator) must still
            # close the model's HTTP stream at once, not whenever the generator is garbage-collected.
            async with contextlib.aclosing(pieces):
                async for piece in pieces:
                    job.stop_if_asked()
                    if span is not None:
                        span.first_token()
                    match piece:
                        case TextPiece(text=text):
                            for delta in await processed(self.processor, writer, agent.name, text, shown):
                                if coalescer is not None:
                                    coalescer.add(delta)
                                    if job.last_text is None:
                                        # The run's first text is stored before the stream is read on: under a
                                        # burst, reading ahead of it would take CPU from other runs' starts.
                                        await coalescer.flush()
                                else:
                                    await writer.emit(TextDelta, agent=agent.name, delta=delta)
                                    self._text_stored(job)
                        case CallStart(call_id=call_id, name=name):
                            if coalescer is not None:
                                await coalescer.flush()
                            await writer.emit(ToolCallStarted, agent=agent.name, call_id=call_id, name=name)
                        case CallArguments(call_id=call_id, delta=delta):
                            await writer.emit(ToolCallDelta, call_id=call_id, delta=delta)
                        case TurnEnd():
                            if coalescer is not None:
                                await coalescer.flush()
                            if self.processor is None:
                                return piece
                            # The final output is the text the clients saw, processed (e.g. redacted) alike.
                            return TurnEnd(text="".join(shown), calls=piece.calls,
                                           finish_reason=piece.finish_reason, usage=piece.usage)
        except Exception:
            if coalescer is not None:  # the text read before a failure is stored before the failure is
                with contextlib.suppress(Exception):
                    await coalescer.flush()
            raise
        finally:
            if coalescer is not None:
                await coalescer.aclose()
        raise RuntimeError("the model stream ended without its end")  # stream_turn always ends with TurnEnd

    def _text_stored(self, job: RunJob) -> None:
        now = time.monotonic()
        if job.last_text is None:
            self.metrics.first_token.observe(now - job.accepted_at)
        else:
            self.metrics.inter_token.observe(now - job.last_text)
        job.last_text = now

    async def _run_calls(self, job: RunJob, agent: AgentSpec, calls: list[PendingCall],
                         messages: list[ChatCompletionMessageParam], resume: Checkpoint | None,
                         decisions: Mapping[str, Decided]) -> str | None:
        """Run the turn's tool calls (concurrently), report them in call order; return a handoff target.

        ``resume``: the tool phase of a run whose runner died in it; reported calls are not run again, the others'
        outcome is unknown (``ToolCaller.call``). ``decisions``: approved calls run with their decided arguments,
        rejected ones are not run (the model gets the rejection)."""
        handoffs = {handoff_tool_name(name): name for name in agent.handoffs}
        reported = resume.outcomes if resume is not None else {}
        target: str | None = None
        rejected = {i: (d.rejection, True) for i, d in decisions.items() if d.rejection is not None}
        plain = [with_arguments(call, decisions[call.id].arguments if call.id in decisions else None)
                 for call in calls if call.name not in handoffs and call.id not in reported and call.id not in rejected]
        progress = progress_sinks(job.writer)
        # Continued by a decision, the phase's calls were waiting, not running: their outcome is not unknown.
        unknown = resume is not None and not job.decided
        results: dict[str, tuple[str, bool]] = dict(zip([c.id for c in plain], await asyncio.gather(*(
            self.caller.call(agent, c, progress(c), unknown=unknown) for c in plain)), strict=True))
        results.update(rejected)
        for call in calls:
            if call.name in handoffs:
                if target is None:
                    target = handoffs[call.name]
                    output = handoff_output(target)
                    if call.id not in reported:
                        with genai.handoff(from_agent=agent.name, to_agent=target, tool=call.name, call_id=call.id):
                            await job.writer.emit(Handoff, call_id=call.id, from_agent=agent.name, to_agent=target)
                        self.metrics.handoffs.inc()
                else:
                    output = ignored_handoff_output(target)
            elif call.id in reported:
                output = reported[call.id][0]
            else:
                output, is_error = results[call.id]
                await job.writer.emit(ToolOutput, call_id=call.id, name=call.name, output=output,
                                      is_error=is_error)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
        return target
