"""A nats-py client whose private parts are not the ones shared.nats.fastpaths was written against."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.protocol.parser import Parser


class OtherParser(Parser):
    """nats-py's parser under another class: what a new nats-py with its own parser looks like from outside."""


class ReshapedClient(NATS):
    """Works like nats-py's client (it delegates), but every private piece a fast path uses has another shape."""

    def __init__(self) -> None:
        super().__init__()
        self._ps = OtherParser(self)

    async def _process_msg(self, sid: int, subj: bytes, reply: bytes, payload: bytes,  # type: ignore[override]
                           hdrs: bytes | None) -> None:
        await super()._process_msg(sid, subj, reply, payload, hdrs)  # type: ignore[arg-type]

    async def _flush_pending(self, force_flush: bool = False, reason: str = "") -> Any:
        return await super()._flush_pending(force_flush)


async def connect_reshaped(url: str) -> ReshapedClient:
    nc = ReshapedClient()
    await nc.connect(url)
    return nc
