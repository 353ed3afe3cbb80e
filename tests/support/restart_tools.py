"""Tools for the restart tests (RAAF_TOOLS_MODULE=tests.support.restart_tools): each records its calls in a file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def _record(line: str) -> int:
    """Append ``line`` to the calls file; how many calls of that kind it held before."""
    path = Path(os.environ["RESTART_TOOL_CALLS"])
    earlier = path.read_text().splitlines() if path.exists() else []
    with path.open("a") as calls:
        calls.write(line + "\n")
        calls.flush()
        os.fsync(calls.fileno())
    return sum(1 for e in earlier if e.split(" ", 1)[0] == line.split(" ", 1)[0])


def note(text: str) -> str:
    """Write a note (not idempotent)."""
    _record(f"note {text}")
    return f"noted {text}"


async def charge(amount: int, seconds: float = 0.0) -> str:
    """Charge a card (not idempotent); takes ``seconds``."""
    _record(f"charge {amount}")
    await asyncio.sleep(seconds)
    return f"charged {amount}"


async def lookup(key: str, seconds: float = 0.0) -> str:
    """Look a key up (idempotent in the agents file); the first call takes ``seconds``, later ones none."""
    if _record(f"lookup {key}") == 0:
        await asyncio.sleep(seconds)
    return f"{key} is 42"
