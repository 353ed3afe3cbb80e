"""A faster reader of nats-py's incoming protocol: a whole read chunk of ``MSG``s in one pass.

nats-py's parser matches a regular expression, fills a dict and copies through a bytearray for every
message, about as much CPU as the gateway's own work on a channel message. :class:`ChunkParser` walks a
read chunk with ``find``/``split`` and hands each ``MSG`` to the client's ``_process_msg`` exactly as nats-py
does (same arguments, same order); every other operation (``HMSG``, ``PING``, ``INFO``, ``-ERR`` ...) goes,
whole, to nats-py's own parser. It relies on nats-py internals (pinned by ``uv.lock``), so :func:`install`
checks their shape once and leaves the client untouched when it is not what this was written against.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import ProtocolError
from nats.protocol import parser as nats_parser

log = logging.getLogger("raaf.nats")

_AWAITING_CONTROL_LINE = getattr(nats_parser, "AWAITING_CONTROL_LINE", None)
_MSG = b"MSG "
_HMSG = b"HMSG "
_CRLF = b"\r\n"


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


def shape_ok(nc: NATS) -> bool:
    """Whether ``nc`` is the nats-py client this parser was written against."""
    parser = getattr(nc, "_ps", None)
    return (
        type(parser) in (nats_parser.Parser, ChunkParser)
        and _AWAITING_CONTROL_LINE is not None
        and isinstance(getattr(parser, "buf", None), bytearray)
        and hasattr(parser, "state")
        and callable(getattr(nc, "_process_msg", None))
    )


def install(nc: NATS) -> bool:
    """Parse ``nc``'s incoming messages with :class:`ChunkParser` from its next read on; False if it cannot."""
    if not shape_ok(nc):
        log.warning("nats-py's parser is not the one expected: keeping it (slower channel delivery)")
        return False
    parser: Any = nc._ps
    parser.__class__ = ChunkParser  # keeps its state: a chunk half-read stays half-read
    return True
