"""Ready-to-write bytes: WebSocket frames (plain or deflated) and SSE events, each built once per message.

Server frames are unmasked, so one frame serves every connection. Compression is permessage-deflate
with ``server_no_context_takeover``: each message is deflated on its own (one process-wide compressor,
``Z_FULL_FLUSH`` after every message), so the compressed frame is shared too and no connection keeps a
compressor (aiohttp keeps one per connection: ~100 KiB each).
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import msgspec

OP_TEXT: Final = 0x1
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA
_FIN: Final = 0x80
_RSV1: Final = 0x40
_DEFLATE_TAIL: Final = b"\x00\x00\xff\xff"
_PACK_2 = struct.Struct("!BB").pack
_PACK_4 = struct.Struct("!BBH").pack
_PACK_10 = struct.Struct("!BBQ").pack
_PACK_CODE = struct.Struct("!H").pack


def frame(payload: bytes, opcode: int = OP_TEXT, rsv: int = 0) -> bytes:
    """One final, unmasked WebSocket frame."""
    first = _FIN | rsv | opcode
    n = len(payload)
    if n < 126:
        return _PACK_2(first, n) + payload
    if n < 65536:
        return _PACK_4(first, 126, n) + payload
    return _PACK_10(first, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    # Control frame payloads are at most 125 bytes: 2 for the code, the reason cut to fit.
    return frame(_PACK_CODE(code) + reason.encode()[:123], OP_CLOSE)


PING_FRAME: Final = frame(b"", OP_PING)


class Deflater:
    """Compresses whole messages independently with one compressor per window size."""

    def __init__(self, level: int = 1, threshold: int = 256) -> None:
        self.level = level
        self.threshold = threshold
        self._compressors: dict[int, zlib._Compress] = {}

    def compress(self, payload: bytes, wbits: int = 15) -> bytes:
        compressor = self._compressors.get(wbits)
        if compressor is None:
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, -wbits)
            self._compressors[wbits] = compressor
        data = compressor.compress(payload) + compressor.flush(zlib.Z_FULL_FLUSH)
        return data[:-4] if data.endswith(_DEFLATE_TAIL) else data


def sse_event(event: str, payload: bytes) -> bytes:
    """One SSE event. ``payload`` is valid JSON, so a raw CR or LF in it can only be whitespace between
    tokens: LFs become extra ``data:`` lines (which SSE joins back with LF), CRs are dropped."""
    if b"\n" in payload or b"\r" in payload:
        payload = payload.replace(b"\r", b"").replace(b"\n", b"\ndata: ")
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class Outgoing:
    """One message to send: its JSON payload and, built on first use, each wire form of it."""

    __slots__ = ("_deflated", "_plain", "_sse", "event", "payload")

    def __init__(self, payload: bytes, event: str | None = None) -> None:
        self.payload = payload
        self.event = event  # the SSE event name: the message's type (looked up when needed)
        self._plain: bytes | None = None
        self._deflated: dict[int, bytes] | None = None
        self._sse: dict[bool, bytes] | None = None

    def websocket(self, deflater: Deflater | None, wbits: int) -> bytes:
        """The frame for a connection; ``deflater`` is None unless it negotiated permessage-deflate."""
        if deflater is None or len(self.payload) < deflater.threshold:
            if self._plain is None:
                self._plain = frame(self.payload)
            return self._plain
        if self._deflated is None:
            self._deflated = {}
        data = self._deflated.get(wbits)
        if data is None:
            data = self._deflated[wbits] = frame(deflater.compress(self.payload, wbits), OP_TEXT, _RSV1)
        return data

    def sse(self, chunked: bool) -> bytes:
        if self._sse is None:
            self._sse = {}
        data = self._sse.get(chunked)
        if data is None:
            if self.event is None:
                self.event = message_type(self.payload)
            event = sse_event(self.event, self.payload)
            data = self._sse[chunked] = http_chunk(event) if chunked else event
        return data


class _TypeOnly(msgspec.Struct):
    type: str = "message"


_type_decoder = msgspec.json.Decoder(_TypeOnly)


def message_type(payload: bytes) -> str:
    """The ``type`` of a JSON message, for an SSE event name (``message`` when it has none)."""
    try:
        kind = _type_decoder.decode(payload).type
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "message"
    return kind if kind.isidentifier() else "message"
