"""``eventually()``, the tests' one way to wait for a condition: it returns what held, or fails saying what did not."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.waiting import eventually


async def test_eventually_returns_the_first_truthy_value_of_a_sync_check() -> None:
    calls: list[int] = []

    def third_time() -> list[int]:
        calls.append(len(calls))
        return calls if len(calls) >= 3 else []

    assert await eventually(third_time, 1, interval=0) == [0, 1, 2]


async def test_eventually_awaits_an_async_check() -> None:
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, flag.set)

    async def is_set() -> bool:
        return flag.is_set()

    assert await eventually(is_set, 2) is True


async def test_eventually_fails_naming_what_did_not_hold_and_its_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the answer did not hold within 0.05s \(last value: 0\)"):
        await eventually(lambda: 0, 0.05, what="the answer")


async def test_an_assertion_inside_the_check_fails_at_once() -> None:
    def broken() -> bool:
        raise AssertionError("the server died")

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match="the server died"):
        await eventually(broken, 10)
    assert loop.time() - started < 1
