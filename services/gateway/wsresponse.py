"""aiohttp's WebSocket response, negotiating permessage-deflate so that no connection keeps zlib state.

The response header always carries ``server_no_context_takeover`` (RFC 7692 lets a server add it
unasked), so the gateway can deflate each message once for everyone, and ``client_no_context_takeover``,
so each client message inflates on its own and the inflater can be dropped after it instead of
holding a 32 KiB window per connection. Both hooks use aiohttp internals pinned by ``uv.lock``;
``tests/test_gateway_frames.py`` checks them against aiohttp's own client.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from aiohttp._websocket import reader_py
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE
from aiohttp.http import WebSocketWriter
from multidict import CIMultiDict


class _InflaterDroppingReader(reader_py.WebSocketReader):
    """aiohttp's frame reader that frees its inflater after each compressed message."""

    def _handle_frame(self, fin: bool, opcode: Any, payload: bytes | bytearray, compressed: Any) -> None:
        try:
            super()._handle_frame(fin, opcode, payload, compressed)
        finally:
            if fin and compressed:
                self._decompressobj = None


class GatewayWebSocketResponse(web.WebSocketResponse):
    """Negotiates deflate without context takeover; ``deflate_wbits`` is 0 when compression is off."""

    deflate_wbits: int = 0

    def _handshake(self, request: web.BaseRequest) -> tuple[CIMultiDict[str], str | None, int, bool]:
        headers, protocol, compress, _ = super()._handshake(request)
        if compress:
            extension = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            if compress < 15:
                extension += f"; server_max_window_bits={compress}"
            headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = extension
            self.deflate_wbits = compress
        return headers, protocol, compress, True

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: WebSocketWriter) -> None:
        # aiohttp's own _post_start, with the inflater-dropping reader when deflate was negotiated.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        assert self._loop is not None
        if self._compress:
            # The pure-Python reader (it must be paired with the pure-Python queue) lets us drop the inflater.
            self._reader = reader_py.WebSocketDataQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=self._loop)
            self._parser = _InflaterDroppingReader(self._reader, self._max_msg_size, compress=True,
                                                   decode_text=self._decode_text)
        else:
            self._reader = WebSocketDataQueue(request._protocol, DEFAULT_CHUNK_SIZE, loop=self._loop)
            self._parser = WebSocketReader(self._reader, self._max_msg_size, compress=False,
                                           decode_text=self._decode_text)
        request.protocol.set_parser(self._parser)
        request.protocol.keep_alive(False)
