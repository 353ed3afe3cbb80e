"""Tools the client runs itself: checked against the server's, offered to the model, their calls end the run."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from proto.runs import AgentSpec, ClientTool, RunRequest, handoff_tool_name
from services.agent_runner.errors import BadRunRequest, client_tool_clash

# OpenAI's limit on function names.
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_CLIENT_TOOLS: Final = 128


def server_tool_names(agents: Mapping[str, AgentSpec]) -> set[str]:
    """Every tool name the run's agents may call server-side: their tools and their handoffs."""
    names: set[str] = set()
    for agent in agents.values():
        names.update(agent.tools)
        names.update(handoff_tool_name(target) for target in agent.handoffs)
    return names


def check_client_tools(request: RunRequest, agents: Mapping[str, AgentSpec]) -> None:
    """Typed errors for client tools that are malformed, repeated, too many or named like a server tool."""
    if len(request.client_tools) > MAX_CLIENT_TOOLS:
        raise BadRunRequest(f"{len(request.client_tools)} client tools; the limit is {MAX_CLIENT_TOOLS}")
    server = server_tool_names(agents)
    seen: set[str] = set()
    for tool in request.client_tools:
        if _TOOL_NAME.fullmatch(tool.name) is None:
            raise BadRunRequest(f"client tool name {tool.name!r} must be 1-64 letters, digits, '_' or '-'")
        if tool.name in seen:
            raise BadRunRequest(f"two client tools are named {tool.name!r}")
        if tool.name in server:
            raise client_tool_clash(tool.name)
        seen.add(tool.name)
    if request.tool_choice_name is not None:
        agent = agents[request.agent]
        if request.tool_choice_name not in seen and request.tool_choice_name not in agent.tools:
            raise BadRunRequest(f"tool_choice names {request.tool_choice_name!r}, which is no tool of this run")
    if request.max_output_tokens is not None and request.max_output_tokens < 1:
        raise BadRunRequest("max_output_tokens must be >= 1")


def client_tool_schema(tool: ClientTool) -> dict[str, Any]:
    """The tool as the model's chat-completions request offers it."""
    function: dict[str, Any] = {"name": tool.name,
                                "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def model_options(request: RunRequest, turn: int, *, has_tools: bool) -> dict[str, Any]:
    """``tool_choice`` / ``parallel_tool_calls`` for a model request; a forced choice holds for the first turn only
    (forcing it on every turn would never let the model answer)."""
    options: dict[str, Any] = {}
    if not has_tools:
        return options
    if request.tool_choice_name is not None and turn == 1:
        options["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice_name}}
    elif request.tool_choice == "none" or (request.tool_choice == "required" and turn == 1):
        options["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        options["parallel_tool_calls"] = request.parallel_tool_calls
    return options


def conversation(request: RunRequest) -> dict[str, Any]:
    """What the run's first event records of the request, so a later run can continue the conversation."""
    return {"input": request.input, "history": request.history, "metadata": request.metadata,
            "client_tools": [tool.name for tool in request.client_tools]}
