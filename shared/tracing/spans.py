"""Span helpers for request handlers: no-ops while tracing is off, SERVER spans continuing a caller's trace."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import ParamSpec, TypeVar

from aiohttp import web
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from shared.tracing.propagation import context_from, link_from
from shared.tracing.setup import TRACING

P = ParamSpec("P")
R = TypeVar("R")


def tracer(name: str) -> Tracer:
    """The tracer of one component (``raaf.gateway``, ``raaf.agent-runner`` ...): the span's scope."""
    return trace.get_tracer(name, "0.1.0")


@contextlib.contextmanager
def server_span(component: str, name: str, headers: Mapping[str, str] | None = None,
                attributes: Mapping[str, AttributeValue] | None = None,
                kind: SpanKind = SpanKind.SERVER) -> Iterator[Span | None]:
    """A current span continuing the trace ``headers`` carry (a new trace when they carry none); None when off."""
    if not TRACING.on:
        yield None
        return
    with tracer(component).start_as_current_span(name, context=context_from(headers), kind=kind,
                                                 attributes=attributes) as span:
        yield span


@contextlib.contextmanager
def linked_root(component: str, name: str, traceparent: str | bytes | None,
                attributes: Mapping[str, AttributeValue] | None = None,
                kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span | None]:
    """A current span starting a trace of its own, with a Link to the span ``traceparent`` names; None when off.

    For work that follows a request at some later time (a job, a chat message's answer): linked, not a child.
    """
    if not TRACING.on:
        yield None
        return
    with tracer(component).start_as_current_span(name, context=Context(), links=link_from(traceparent), kind=kind,
                                                 attributes=attributes) as span:
        yield span


def traced(component: str, name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Run an async handler inside a SERVER span named ``name`` (a WebSocket message, say)."""
    def wrap(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(handler)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            if not TRACING.on:
                return await handler(*args, **kwargs)
            with tracer(component).start_as_current_span(name, kind=SpanKind.SERVER):
                return await handler(*args, **kwargs)
        return run
    return wrap


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def traced_handler(component: str, route: str, handler: Handler) -> Handler:
    """An aiohttp handler inside a SERVER span ``METHOD route`` that continues the caller's ``traceparent``."""
    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        if not TRACING.on:
            return await handler(request)
        name = f"{request.method} {route}"
        attributes: dict[str, AttributeValue] = {"http.request.method": request.method, "http.route": route,
                                                 "url.path": request.path}
        with tracer(component).start_as_current_span(name, context=context_from(request.headers),
                                                     kind=SpanKind.SERVER, attributes=attributes) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response
    return run
