"""Waiting in tests: ``eventually()`` polls a condition until it holds, or fails saying what did not happen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 5.0, *, interval: float = 0.01,
                     what: str = "") -> T:
    """Call ``check`` (sync or async) until it returns something truthy, and return that.

    Fails the test after ``timeout`` seconds, naming ``what`` (or the check) and its last value. For conditions
    that only change when something else happens (a server, another task): an event the test can await directly
    is better still.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(check, "__qualname__", repr(check))
            raise AssertionError(f"{name} did not hold within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
