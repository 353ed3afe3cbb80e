"""Tools the run tests give their agents (RAAF_TOOLS_MODULE=tests.support.tools)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import msgspec

CALLS: list[tuple[str, dict[str, object]]] = []


def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """Current weather for a city."""
    CALLS.append(("get_weather", {"city": city, "unit": unit}))
    return {"city": city, "temperature": 21 if unit == "c" else 70, "unit": unit}


def add(a: int, b: Annotated[int, msgspec.Meta(description="the second addend")]) -> int:
    """Add two integers."""
    return a + b


def explode(reason: str) -> str:
    """Always raises."""
    raise RuntimeError(reason)


async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "done"
