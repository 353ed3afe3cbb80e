"""Tools: Python functions a model may call, with the JSON schema of their arguments taken from the signature."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import typing
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

import msgspec

from proto.runs import HANDOFF_PREFIX, is_agent_name
from shared.errors import BadRequestError, ToolError

_TOOL_ATTR: Final = "__raaf_tool__"
_encoder: Final = msgspec.json.Encoder()

ProgressSink = Callable[[float, "float | None", "str | None"], Awaitable[None]]
"""Where a running tool reports progress: ``(progress, total, message)``."""


@dataclass(frozen=True)
class ToolCallContext:
    """The call a tool is running for: the model's call id and where its progress goes (None: nowhere)."""

    call_id: str
    progress: ProgressSink | None = None


_current_call: ContextVar[ToolCallContext | None] = ContextVar("raaf_tool_call", default=None)


def current_tool_call() -> ToolCallContext | None:
    """The call the running tool serves, inside ``Tool.call`` (None outside, or when the caller gave none)."""
    return _current_call.get()


@dataclass(frozen=True)
class Tool:
    """A callable tool: ``parameters`` is the JSON schema the model sees, ``call`` validates and runs it.

    ``arguments`` None: the arguments are any JSON object, passed as they are (a remote tool validates them).
    ``requires_approval``: a person must approve each call before it runs (``docs/approvals.md``).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any]
    arguments: type[msgspec.Struct] | None
    requires_approval: bool = False
    # Safe to run again with the same arguments: a call whose outcome is unknown (its runner died while it ran)
    # is retried on the runner continuing the run; otherwise the model is told the outcome is unknown.
    idempotent: bool = False

    def openai_schema(self) -> dict[str, Any]:
        """The entry for a chat-completions request's ``tools`` list."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def parse(self, arguments_json: str) -> dict[str, Any]:
        """Decode and validate the model's JSON arguments; ``ToolError`` says what is wrong."""
        if self.arguments is None:
            try:
                raw = msgspec.json.decode(arguments_json.encode() or b"{}")
            except msgspec.DecodeError as exc:
                raise ToolError(f"invalid arguments for {self.name}: {exc}") from None
            if not isinstance(raw, dict):
                raise ToolError(f"invalid arguments for {self.name}: expected a JSON object")
            return raw
        try:
            args = msgspec.json.decode(arguments_json.encode() or b"{}", type=self.arguments)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ToolError(f"invalid arguments for {self.name}: {exc}") from None
        return {field: getattr(args, field) for field in args.__struct_fields__}

    async def call(self, arguments_json: str, context: ToolCallContext | None = None) -> str:
        """Run the tool (sync functions in a worker thread) and return its result as text.

        ``context``: the call it runs for, which the tool reads with ``current_tool_call()``."""
        kwargs = self.parse(arguments_json)
        token = _current_call.set(context)
        try:
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(**kwargs)
            else:
                result = await asyncio.to_thread(self.function, **kwargs)
        finally:
            _current_call.reset(token)
        if isinstance(result, str):
            return result
        try:
            return _encoder.encode(result).decode()
        except (TypeError, msgspec.EncodeError):
            return str(result)


def function_tool(function: Callable[..., Any], *, name: str | None = None,
                  description: str | None = None, idempotent: bool = False) -> Tool:
    """Describe ``function`` as a tool: its parameters' annotations and defaults become the JSON schema.

    Annotate with ``Annotated[int, msgspec.Meta(description=...)]`` to describe a parameter to the model.
    """
    tool_name = name or function.__name__
    if not is_agent_name(tool_name) or tool_name.startswith(HANDOFF_PREFIX):
        raise BadRequestError(f"tool name {tool_name!r} must be 1-48 letters, digits, '_' or '-', "
                              f"and not start with {HANDOFF_PREFIX!r}")
    hints = typing.get_type_hints(function, include_extras=True)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise BadRequestError(f"tool {tool_name}: parameter {param.name!r} must be a named parameter")
        annotation = hints.get(param.name, Any)
        if param.default is inspect.Parameter.empty:
            fields.append((param.name, annotation))
        else:
            fields.append((param.name, annotation, param.default))
    arguments = msgspec.defstruct(f"{tool_name}_arguments", fields, kw_only=True, forbid_unknown_fields=True)
    try:
        (ref,), components = msgspec.json.schema_components([arguments], ref_template="#/$defs/{name}")
    except TypeError as exc:
        raise BadRequestError(f"tool {tool_name}: a parameter type has no JSON schema ({exc})") from None
    own = ref["$ref"].rsplit("/", 1)[1]
    parameters = dict(components.pop(own))
    parameters.pop("title", None)
    if components:
        parameters["$defs"] = components
    doc = inspect.getdoc(function) or ""
    summary = description if description is not None else doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    return Tool(name=tool_name, description=summary, parameters=parameters, function=function,
                arguments=arguments, idempotent=idempotent)


def tool(function: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None, idempotent: bool = False) -> Any:
    """Mark a function in a tools module as a tool (``@tool``, ``@tool(name=..., idempotent=True)``); it stays
    callable."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _TOOL_ATTR, function_tool(fn, name=name, description=description, idempotent=idempotent))
        return fn

    return mark(function) if function is not None else mark


def tools_of(module: ModuleType) -> dict[str, Tool]:
    """The module's tools: its ``@tool`` functions; without any, every public function defined in it."""
    marked = [getattr(value, _TOOL_ATTR) for value in vars(module).values() if hasattr(value, _TOOL_ATTR)]
    if marked:
        found: list[Tool] = marked
    else:
        names = getattr(module, "__all__", None)
        candidates = [getattr(module, n) for n in names] if names is not None else [
            value for n, value in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(value) and value.__module__ == module.__name__
        ]
        found = [function_tool(fn) for fn in candidates if callable(fn)]
    tools: dict[str, Tool] = {}
    for item in found:
        if item.name in tools:
            raise BadRequestError(f"two tools are named {item.name!r} in {module.__name__}")
        tools[item.name] = item
    return tools


def load_tools(module_name: str) -> dict[str, Tool]:
    """Import ``module_name`` (e.g. ``myapp.tools``) and return its tools by name."""
    return tools_of(importlib.import_module(module_name))
