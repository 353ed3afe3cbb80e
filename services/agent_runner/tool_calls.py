"""Running one turn's tool calls: the agent's tools, their outputs (errors included) as the model sees them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from proto.runs import AgentSpec, ToolProgress, handoff_tool_name
from services.agent_runner.errors import outcome_unknown
from services.agent_runner.metrics import RunnerMetrics
from services.agent_runner.provider import PendingCall
from services.agent_runner.writer import RunWriter
from shared.errors import ToolError
from shared.runs.tools import ProgressSink, Tool, ToolCallContext
from shared.tracing import genai

log = logging.getLogger("raaf.agent-runner.tools")


class ToolCaller:
    """Calls an agent's tools: its own (``tools``) and those ``agent_tools`` adds (its MCP servers')."""

    def __init__(self, *, tools: Mapping[str, Tool], metrics: RunnerMetrics, max_tool_output_bytes: int,
                 agent_tools: Callable[[AgentSpec], Mapping[str, Tool]] | None = None) -> None:
        self.tools = tools
        self.metrics = metrics
        self.max_tool_output_bytes = max_tool_output_bytes
        self.agent_tools = agent_tools

    async def call(self, agent: AgentSpec, call: PendingCall, progress: ProgressSink | None = None, *,
                   unknown: bool = False) -> tuple[str, bool]:
        """(output, is_error), in an ``execute_tool <name>`` span.

        ``unknown``: the runner that started this call died before its outcome was stored; it runs again only if
        the tool is idempotent, otherwise the model is told the outcome is unknown."""
        with genai.tool_call(agent=agent.name, name=call.name, call_id=call.id) as span:
            output, is_error, outcome = await self._output(agent, call, progress, unknown=unknown)
            if is_error:
                genai.tool_failed(span, outcome, output)
        return output, is_error

    async def _output(self, agent: AgentSpec, call: PendingCall, progress: ProgressSink | None, *,
                      unknown: bool) -> tuple[str, bool, str]:
        """(output, is_error, outcome): errors go back to the model as the tool's output, so it can recover."""
        tool = self.tools_of(agent).get(call.name)
        if unknown and tool is not None and not tool.idempotent:
            self.metrics.tool_calls.labels(outcome="error").inc()
            return outcome_unknown(call.name), True, "outcome_unknown"
        started = time.monotonic()
        if tool is None:
            output, is_error, outcome = f"error: agent {agent.name} has no tool named {call.name!r}", True, "unknown"
        else:
            try:
                output = await tool.call(call.arguments_json, ToolCallContext(call_id=call.id, progress=progress))
                is_error, outcome = False, "ok"
            except ToolError as exc:
                output, is_error, outcome = f"error: {exc.message}", True, "invalid_arguments"
            except Exception as exc:
                log.warning("tool %s raised %s", call.name, exc, exc_info=True)
                output, is_error, outcome = f"error: {type(exc).__name__}: {exc}", True, "error"
        self.metrics.tool_calls.labels(outcome="ok" if outcome == "ok" else "error").inc()
        self.metrics.tool_duration.observe(time.monotonic() - started)
        encoded = output.encode()
        if len(encoded) > self.max_tool_output_bytes:
            output = encoded[: self.max_tool_output_bytes].decode(errors="ignore") + " [truncated]"
        return output, is_error, outcome

    def tools_of(self, agent: AgentSpec) -> dict[str, Tool]:
        """The tools ``agent`` may call now: its own, then those ``agent_tools`` adds."""
        tools = {name: self.tools[name] for name in agent.tools if name in self.tools}
        if self.agent_tools is not None:
            for name, tool in self.agent_tools(agent).items():
                tools.setdefault(name, tool)
        return tools

    def schemas(self, agent: AgentSpec, agents: Mapping[str, AgentSpec]) -> list[dict[str, object]]:
        """The ``tools`` the model is offered: the agent's tools and a transfer tool per handoff."""
        schemas: list[dict[str, object]] = [tool.openai_schema() for tool in self.tools_of(agent).values()]
        for name in agent.handoffs:
            other = agents[name]
            description = other.handoff_description or f"Hand the conversation over to the {name} agent."
            schemas.append({"type": "function", "function": {
                "name": handoff_tool_name(name), "description": description,
                "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}})
        return schemas


def progress_sinks(writer: RunWriter) -> Callable[[PendingCall], ProgressSink]:
    """Per call, where its progress goes: ``run_tool_progress`` events, one at a time (calls run at once)."""
    lock = asyncio.Lock()

    def sink(call: PendingCall) -> ProgressSink:
        async def report(progress: float, total: float | None, message: str | None) -> None:
            async with lock:
                await writer.emit(ToolProgress, call_id=call.id, name=call.name, progress=progress,
                                  total=total, message=message)
        return report
    return sink
