"""Callbacks for code embedding the gateway (the seed's ``on_connection`` / ``on_message`` / ... hooks)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.gateway.connection import Connection

log = logging.getLogger("raaf.gateway.hooks")

ConnectionHook = Callable[[Connection], Awaitable[None] | None]
MessageHook = Callable[[Connection, dict[str, Any]], Awaitable[None] | None]
ErrorHook = Callable[[Connection, BaseException], Awaitable[None] | None]


class GatewayHooks:
    """Lists of sync or async callables; a hook that raises never breaks the gateway.

    ``message`` hooks receive, as a dict, every client message whose ``type`` neither the core nor an
    extension owns (an application's own ``chat_message``, say); without such hooks those are errors.
    A ``message`` hook that raises answers the client with an ``internal`` error and goes to the
    ``error`` hooks, which also see every typed error a client is sent; other hooks' failures are logged.
    """

    def __init__(self) -> None:
        self.connection: list[ConnectionHook] = []
        self.disconnection: list[ConnectionHook] = []
        self.message: list[MessageHook] = []
        self.error: list[ErrorHook] = []

    async def fire_connection(self, conn: Connection) -> None:
        for hook in self.connection:
            await self._call(hook, conn)

    async def fire_disconnection(self, conn: Connection) -> None:
        for hook in self.disconnection:
            await self._call(hook, conn)

    async def fire_message(self, conn: Connection, message: dict[str, Any]) -> None:
        for hook in self.message:
            result = hook(conn, message)
            if inspect.isawaitable(result):
                await result

    async def fire_error(self, conn: Connection, error: BaseException) -> None:
        for hook in self.error:
            await self._call(hook, conn, error)

    async def _call(self, hook: Callable[..., Awaitable[None] | None], *args: Any) -> None:
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("gateway hook %r failed", getattr(hook, "__name__", hook))
