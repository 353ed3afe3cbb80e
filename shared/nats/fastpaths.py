"""nats-py's private internals, in one place: the fast paths that use them, each checked against nats-py's shape.

Three paths, each written against nats-py 2.16 (``pyproject.toml`` bounds it below 2.17):

- ``parser``: :class:`ChunkParser` reads a whole chunk of ``MSG``\\ s in one pass (``find``/``split``) where
  nats-py matches a regular expression, fills a dict and copies through a bytearray per message; every other
  operation goes, whole, to nats-py's own parser.
- ``direct``: the client's ``_process_msg`` hands the messages of subscriptions registered in :class:`Routes`
  to a plain function, synchronously, in arrival order, skipping nats-py's per-message ``Msg``, queue and task
  hop (about a microsecond a message). The public API is ``shared.nats.direct.DirectDelivery``.
- ``lean_publish``: :class:`LeanPublish` writes a plain PUB into the client's pending buffer the way
  ``_send_publish`` does (same buffer, flusher kick and pending-size limit), without nats-py's generic checks.

:func:`install` is the only way in: it checks the client's shape (its class once, its private attributes on
each call), turns on what the caller asks for and the shape allows, and returns which of those are active. A
path it refuses is logged as a warning and stays on nats-py's public path, which every caller keeps.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

log = logging.getLogger("raaf.nats")

Route = Callable[[bytes], None]  # the payload only
MessageRoute = Callable[[bytes, bytes, bytes | None], None]  # subject, payload, raw headers (None without)

_AWAITING_CONTROL_LINE = getattr(nats_parser, "AWAITING_CONTROL_LINE", None)
_MSG = b"MSG "
_HMSG = b"HMSG "
_CRLF = b"\r\n"
_PREFIX_CACHE_SIZE = 4096
_CONNECTED = 1  # nats-py's Client.CONNECTED, checked by _class_refusals
# The private signatures the paths call, by parameter name: a renamed or added parameter is another shape.
_PROCESS_MSG = ("self", "sid", "subject", "reply", "data", "headers")
_FLUSH_PENDING = ("self", "force_flush")


class FastPathUnavailable(RuntimeError):
    """A fast path was asked of a client that :func:`install` did not turn it on for."""


@dataclass(frozen=True, slots=True)
class FastPaths:
    """Which fast paths are active on a client; a False one is nats-py's public path."""

    parser: bool = False
    direct: bool = False
    lean_publish: bool = False


class ChunkParser(nats_parser.Parser):
    """nats-py's ``Parser`` with a fast path for ``MSG``; state is nats-py's own (``buf``, ``state``)."""

    async def parse(self, data: bytes = b"") -> None:
        if self.state != _AWAITING_CONTROL_LINE:  # nats-py is inside a message: let it finish this chunk
            await super().parse(data)
            return
        if self.buf:  # the unfinished operation the last chunk ended with
            data = bytes(self.buf) + data
            self.buf.clear()
        process = self.nc._process_msg
        find = data.find
        startswith = data.startswith
        end = len(data)
        pos = 0
        while pos < end:
            eol = find(_CRLF, pos)
            if eol < 0:
                break
            if startswith(_MSG, pos):
                args = data[pos + 4:eol].split()
                try:
                    if len(args) == 3:
                        subject, sid, size = args
                        reply = b""
                    else:
                        subject, sid, reply, size = args
                    start = eol + 2
                    stop = start + int(size)
                    sid_number = int(sid)
                except ValueError:
                    raise ProtocolError("nats: malformed MSG") from None
                if stop + 2 > end:
                    break
                pos = stop + 2
                await process(sid_number, subject, reply, data[start:stop], None)
                continue
            stop = eol + 2
            if startswith(_HMSG, pos):  # headers and payload follow: the last number counts both
                try:
                    stop += int(data[pos:eol].rsplit(None, 1)[1]) + 2
                except (ValueError, IndexError):
                    raise ProtocolError("nats: malformed HMSG") from None
                if stop > end:
                    break
            await super().parse(data[pos:stop])
            pos = stop
        if pos < end:
            self.buf.extend(data[pos:] if pos else data)


class Routes:
    """The direct routes of one client, by subscription; shared by every ``DirectDelivery`` on it."""

    __slots__ = ("messages", "payloads")

    def __init__(self) -> None:
        self.payloads: dict[int, Route] = {}
        self.messages: dict[int, MessageRoute] = {}

    def add(self, sub: Subscription, route: Route) -> None:
        self.payloads[sub._id] = route

    def add_messages(self, sub: Subscription, route: MessageRoute) -> None:
        self.messages[sub._id] = route

    def forget(self, sub: Subscription) -> None:
        self.payloads.pop(sub._id, None)
        self.messages.pop(sub._id, None)


class _State:
    """What :func:`install` turned on for one client; holds no reference back to it."""

    __slots__ = ("lean_publish", "parser", "routes")

    def __init__(self) -> None:
        self.parser = self.lean_publish = False
        self.routes: Routes | None = None


# Keyed weakly by the client, so a dropped client is collected with its routes.
_states: weakref.WeakKeyDictionary[NATS, _State] = weakref.WeakKeyDictionary()


_classes_checked: weakref.WeakKeyDictionary[type, dict[str, str]] = weakref.WeakKeyDictionary()


def _parameters(function: object) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters) if callable(function) else ()
    except (TypeError, ValueError):
        return ()


def _class_refusals(cls: type) -> Mapping[str, str]:
    """Why each path cannot use clients of ``cls`` (none for nats-py's own client); checked once per class."""
    known = _classes_checked.get(cls)
    if known is not None:
        return known
    refusals: dict[str, str] = {}
    _classes_checked[cls] = refusals
    if _AWAITING_CONTROL_LINE != 1 or not callable(getattr(nats_parser.Parser, "parse", None)):
        refusals["parser"] = "nats.protocol.parser has no AWAITING_CONTROL_LINE state or Parser.parse"
    if _parameters(getattr(cls, "_process_msg", None)) != _PROCESS_MSG:
        reason = "its _process_msg is not _process_msg(sid, subject, reply, data, headers)"
        refusals["direct"] = refusals["parser"] = reason
    elif "id" not in _parameters(Subscription.__init__):
        refusals["direct"] = "Subscription no longer takes its id"
    flush_pending = _parameters(getattr(cls, "_flush_pending", None))
    if getattr(cls, "CONNECTED", None) != _CONNECTED or flush_pending != _FLUSH_PENDING:
        refusals["lean_publish"] = "its CONNECTED status or _flush_pending(force_flush) is not the expected one"
    return refusals


def _parser_shape(nc: NATS) -> bool:
    parser = getattr(nc, "_ps", None)
    return (type(parser) in (nats_parser.Parser, ChunkParser) and isinstance(getattr(parser, "buf", None), bytearray)
            and hasattr(parser, "state"))


def _direct_shape(nc: NATS) -> bool:
    stats = getattr(nc, "stats", None)
    return (isinstance(stats, dict) and isinstance(stats.get("in_msgs"), int)
            and isinstance(stats.get("in_bytes"), int))


def _lean_shape(nc: NATS) -> bool:
    """Whether ``nc`` (connected) has the private attributes :class:`LeanPublish` writes, with their types."""
    untyped: Any = nc
    try:
        stats = untyped.stats
        return (isinstance(untyped._pending, list) and isinstance(untyped._pending_data_size, int)
                and isinstance(untyped._max_pending_size, int) and isinstance(untyped._max_payload, int)
                and isinstance(untyped._flush_queue, asyncio.Queue) and isinstance(untyped._status, int)
                and isinstance(stats, dict) and isinstance(stats.get("out_msgs"), int)
                and isinstance(stats.get("out_bytes"), int))
    except AttributeError:
        return False


_SHAPES: dict[str, tuple[Callable[[NATS], bool], str]] = {
    "parser": (_parser_shape, "its parser is not nats-py's Parser"),
    "direct": (_direct_shape, "its stats have no in_msgs/in_bytes counters"),
    "lean_publish": (_lean_shape, "its pending buffer and flusher are not the expected ones (not connected yet?)"),
}


def _refusal(nc: NATS, path: str) -> str | None:
    reason = _class_refusals(type(nc)).get(path)
    if reason is None:
        shape_ok, why = _SHAPES[path]
        if not shape_ok(nc):
            reason = why
    return reason


def _hook(nc: NATS, routes: Routes) -> None:
    """Route the messages of ``routes`` from the client's reader; every other message goes to nats-py."""
    original: Any = nc._process_msg
    stats: dict[str, Any] = nc.stats
    payloads = routes.payloads
    messages = routes.messages

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        route = payloads.get(sid)
        if route is not None:
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                route(data)
            except Exception:
                log.exception("delivering a message on %s failed", subject)
            return
        message_route = messages.get(sid)
        if message_route is None:
            await original(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            message_route(subject, data, headers)
        except Exception:
            log.exception("delivering a message on %s failed", subject)

    nc._process_msg = process_msg  # type: ignore[method-assign]


def install(nc: NATS, *, parser: bool = False, direct: bool = False, lean_publish: bool = False) -> FastPaths:
    """Turn on the requested fast paths that ``nc``'s shape allows; which of the requested ones are active.

    Idempotent: a path already on stays on (the reader hook is installed once per client). A refused path
    is logged as a warning; the caller then uses nats-py's public path for it."""
    wanted = {"parser": parser, "direct": direct, "lean_publish": lean_publish}
    state = _states.get(nc)
    now = FastPaths() if state is None else _paths(state)
    for path, asked in wanted.items():
        if not asked or getattr(now, path):
            continue
        reason = _refusal(nc, path)
        if reason is not None:
            log.warning("nats fast path %r is off for this client: %s; using nats-py's public path (slower)",
                        path, reason)
            continue
        if state is None:
            state = _states[nc] = _State()
        if path == "parser":
            untyped: Any = nc._ps
            untyped.__class__ = ChunkParser  # keeps its state: a chunk half-read stays half-read
            state.parser = True
        elif path == "direct":
            state.routes = Routes()
            _hook(nc, state.routes)
        else:
            state.lean_publish = True
    on = FastPaths() if state is None else _paths(state)
    return FastPaths(parser=parser and on.parser, direct=direct and on.direct,
                     lean_publish=lean_publish and on.lean_publish)


def _paths(state: _State) -> FastPaths:
    return FastPaths(parser=state.parser, direct=state.routes is not None, lean_publish=state.lean_publish)


def active(nc: NATS) -> FastPaths:
    """Which fast paths are on for ``nc``, whoever asked for them."""
    state = _states.get(nc)
    return FastPaths() if state is None else _paths(state)


def routes(nc: NATS) -> Routes:
    """The direct routes of ``nc``; :class:`FastPathUnavailable` unless ``install(nc, direct=True)`` turned them on."""
    state = _states.get(nc)
    if state is None or state.routes is None:
        raise FastPathUnavailable("direct delivery is not on for this client: ask install(nc, direct=True) first "
                                  "and use nats-py's subscribe when it says no")
    return state.routes


class LeanPublish:
    """``await publish(subject, payload)``: a plain publish on ``nc``, lean when :func:`install` allows it.

    For subjects the caller has already checked; no reply, no headers. Every publish while the client is not
    plainly connected (reconnecting, draining, closed) goes through ``nc.publish``, keeping nats-py's own
    buffering and errors for those states."""

    __slots__ = ("_prefixes", "lean", "nc", "publish")

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.lean = install(nc, lean_publish=True).lean_publish
        self._prefixes: dict[str, bytes] = {}
        self.publish: Callable[[str, bytes], Awaitable[None]] = self._lean if self.lean else self._plain

    async def _plain(self, subject: str, payload: bytes) -> None:
        await self.nc.publish(subject, payload)

    async def _lean(self, subject: str, payload: bytes) -> None:
        nc: Any = self.nc
        if nc._status != _CONNECTED:
            # Reconnecting (buffer or OutboundBufferLimitError), draining, closed: nats-py decides.
            await nc.publish(subject, payload)
            return
        size = len(payload)
        if size > nc._max_payload:
            raise nats.errors.MaxPayloadError
        prefix = self._prefixes.get(subject)
        if prefix is None:
            if not subject:
                raise nats.errors.BadSubjectError
            if len(self._prefixes) >= _PREFIX_CACHE_SIZE:
                self._prefixes.clear()
            prefix = self._prefixes[subject] = f"PUB {subject}  ".encode()  # empty reply, as nats-py writes it
        command = b"%b%d\r\n%b\r\n" % (prefix, size, payload)
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
            await nc._flush_pending(force_flush=True)
        if nc._flush_queue.empty():
            await nc._flush_pending()
