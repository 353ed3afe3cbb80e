"""The demo's agents and tools: served with the demo model when no agents file or tools module is configured."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Annotated, Final

import msgspec

from proto.runs import AgentSpec
from shared.runs.tools import Tool, function_tool

_CONDITIONS: Final = ("sunny", "partly cloudy", "light rain", "overcast", "windy", "clear skies")

DEMO_AGENTS: Final = (
    AgentSpec(name="assistant", instructions="You are a helpful assistant. Use the tools for weather and time.",
              tools=["get_weather", "get_time"]),
    AgentSpec(name="triage", instructions="Answer general questions; hand billing questions to billing.",
              tools=["get_weather", "get_time"], handoffs=["billing"]),
    AgentSpec(name="billing", instructions="You handle invoices and payments.",
              handoff_description="Questions about invoices, payments, charges and refunds."),
)


def get_weather(city: Annotated[str, msgspec.Meta(min_length=1, max_length=100, description="a city name")]) -> str:
    """The weather in a city (canned: the demo has no weather service, but the same city always gets the same)."""
    seed = sum(city.lower().encode())
    return f"{city}: {_CONDITIONS[seed % len(_CONDITIONS)]}, {seed % 25 + 5} °C (demo data)"


def get_time(timezone: Annotated[str, msgspec.Meta(max_length=64, description="an IANA time zone")] = "UTC") -> str:
    """The current date and time in a time zone."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None
    return datetime.datetime.now(zone).strftime("%A %d %B %Y, %H:%M:%S ") + timezone


def demo_tools() -> dict[str, Tool]:
    """The demo agents' tools by name."""
    return {tool.name: tool for tool in (function_tool(get_weather), function_tool(get_time))}
