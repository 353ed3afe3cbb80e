"""aiohttp's WebSocket response, negotiating permessage-deflate so that no connection keeps zlib state; guarded.

The response header always carries ``server_no_context_takeover`` (RFC 7692 lets a server add it
unasked), so the gateway can deflate each message once for everyone, and ``client_no_context_takeover``,
so each client message inflates on its own and the inflater can be dropped after it instead of
holding a 32 KiB window per connection (docs/bench-gateway.md: 16 KiB a connection after traffic; plain aiohttp 123).

The hooks override aiohttp's private ``_handshake`` and ``_post_start`` and use its pure-Python frame reader,
written against aiohttp 3.14 (``pyproject.toml`` bounds it below 3.15). This module is the gateway's only
code on aiohttp internals: :func:`install` checks their shape once and answers which response class to use,
aiohttp's own ``WebSocketResponse`` when the shape is not the expected one (with a warning) or the switch
(``GATEWAY_WS_FAST_PATH``) is off. That one is correct too, as the gateway's deflated frames never refer
back to an earlier message, but a connection keeps its inflater (a 32 KiB window) after a compressed client
message; the gateway writes its own frames, so aiohttp's lazily made compressor is never made either way.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from aiohttp import hdrs, web
from aiohttp._websocket import reader_py
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http import WebSocketWriter
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

log = logging.getLogger("raaf.gateway")

# The private methods the hooks override or call, by parameter name: a renamed or added one is another shape.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "WebSocketResponse._handshake": ("self", "request"),
    "WebSocketResponse._post_start": ("self", "request", "protocol", "writer"),
    "WebSocketResponse._reset_heartbeat": ("self",),
    "WebSocketResponse._on_data_received": ("self",),
    "RequestHandler.set_parser": ("self", "parser", "data_received_cb"),
    "reader_py.WebSocketDataQueue.__init__": ("self", "protocol", "limit", "loop"),
    "reader_py.WebSocketReader.__init__": ("self", "queue", "max_msg_size", "compress", "decode_text"),
    "reader_py.WebSocketReader._handle_frame": ("self", "fin", "opcode", "payload", "compressed"),
}
# What _post_start reads and writes on the response, and the reader's inflater it drops.
_RESPONSE_ATTRIBUTES = ("_ws_protocol", "_writer", "_reader", "_parser", "_loop", "_compress", "_max_msg_size",
                        "_decode_text", "_heartbeat")


class _InflaterDroppingReader(reader_py.WebSocketReader):
    """aiohttp's frame reader that frees its inflater after each compressed message."""

    def _handle_frame(self, fin: bool, opcode: Any, payload: bytes | bytearray, compressed: Any) -> None:
        try:
            super()._handle_frame(fin, opcode, payload, compressed)
        finally:
            if fin and compressed:
                self._decompressobj = None


class GatewayWebSocketResponse(web.WebSocketResponse):
    """Negotiates deflate without context takeover (use it through :func:`install`)."""

    def _handshake(self, request: web.BaseRequest) -> tuple[CIMultiDict[str], str | None, int, bool]:
        headers, protocol, compress, _ = super()._handshake(request)
        if compress:
            extension = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            if compress < 15:
                extension += f"; server_max_window_bits={compress}"
            headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = extension
        return headers, protocol, compress, True

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: WebSocketWriter) -> None:
        if not self._compress:
            super()._post_start(request, protocol, writer)
            return
        # aiohttp's own _post_start, with the pure-Python reader (it must be paired with the pure-Python
        # queue), which can drop its inflater.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        queue: WebSocketDataQueue = reader_py.WebSocketDataQueue(request._protocol, DEFAULT_CHUNK_SIZE,
                                                                 loop=self._loop)
        self._reader = queue
        parser: WebSocketReader = _InflaterDroppingReader(queue, self._max_msg_size, compress=True,
                                                          decode_text=self._decode_text)
        self._parser = parser
        data_received = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(parser, data_received_cb=data_received)
        request.protocol.keep_alive(False)


def _parameters(function: object) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(function).parameters) if callable(function) else ()
    except (TypeError, ValueError):
        return ()


def shape_refusal(handler: type[RequestHandler] = RequestHandler) -> str | None:
    """Why the installed aiohttp (with ``handler`` as its request handler) is not what the hooks were written
    against; None when it is."""
    owners: dict[str, object] = {"WebSocketResponse": web.WebSocketResponse, "RequestHandler": handler,
                                 "reader_py.WebSocketDataQueue": reader_py.WebSocketDataQueue,
                                 "reader_py.WebSocketReader": reader_py.WebSocketReader}
    for name, expected in _SIGNATURES.items():
        owner, _, method = name.rpartition(".")
        if _parameters(getattr(owners[owner], method, None)) != expected:
            return f"{name} is not {name.rpartition('.')[2]}({', '.join(expected[1:])})"
    response = web.WebSocketResponse()
    missing = [name for name in _RESPONSE_ATTRIBUTES if not hasattr(response, name)]
    if missing:
        return f"WebSocketResponse has no {', '.join(missing)}"
    try:
        reader: Any = reader_py.WebSocketReader(None, 1, compress=True, decode_text=False)  # type: ignore[arg-type]
    except Exception as exc:  # another constructor: not the reader the hook subclasses
        return f"reader_py.WebSocketReader cannot be built as expected ({exc!r})"
    if not hasattr(reader, "_decompressobj"):
        return "reader_py.WebSocketReader keeps no _decompressobj"
    return None


_checked: dict[type, str | None] = {}


def install(enabled: bool = True, *,
            handler: type[RequestHandler] = RequestHandler) -> type[web.WebSocketResponse]:
    """The response class for ``/ws``: :class:`GatewayWebSocketResponse` when ``enabled`` and the installed
    aiohttp has the expected shape (checked once), else aiohttp's own (with a warning for a shape)."""
    if not enabled:
        return web.WebSocketResponse
    if handler not in _checked:
        _checked[handler] = shape_refusal(handler)
    refusal = _checked[handler]
    if refusal is not None:
        log.warning("the WebSocket fast path is off: %s; using aiohttp's WebSocketResponse (an inflater kept "
                    "per connection)", refusal)
        return web.WebSocketResponse
    return GatewayWebSocketResponse
