"""Waiting in tests: ``eventually()`` polls a condition until it holds, or fails saying what did not happen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(check: Callable[[], Awaitable[T]], timeout: float = ..., *, interval: float = ...,
                     what: str = ...) -> T: ...


@overload
async def eventually(check: Callable[[], T], timeout: float = ..., *, interval: float = ..., what: str = ...) -> T: ...


async def eventually(check: Callable[[], Any], timeout: float = 5.0, *, interval: float = 0.01,
                     what: str = "") -> Any:
    """Call ``check`` (sync or async) until it returns something truthy, and return that.

    Fails the test after ``timeout`` seconds, naming ``what`` (or the check) and its last value. Where the test
    can await the event itself (a future, a queue, a reply), that is better still.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(check, "__qualname__", repr(check))
            raise AssertionError(f"{name} did not hold within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
