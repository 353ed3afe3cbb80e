"""The event loop a process runs on: uvloop where it is installed (the default), or asyncio's own.

``RAAF_EVENT_LOOP`` chooses: ``auto`` (uvloop if importable, else asyncio), ``uvloop`` (an error where it is
not installed) or ``asyncio``. uvloop is what uvicorn uses by default; nats-py, aiohttp and redis-py run on it
unchanged (docs/bench-gateway.md measures the gateway on both).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from shared.errors import EventLoopUnavailable, event_loop_unavailable

EVENT_LOOPS: Final = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_installed() -> bool:
    try:
        return importlib.util.find_spec("uvloop") is not None
    except ValueError:  # a module object without a spec (e.g. set to None in sys.modules)
        return False


def resolve(choice: str) -> str:
    """The loop ``choice`` means here: ``uvloop`` or ``asyncio``; raises :class:`EventLoopUnavailable`."""
    if choice == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    if choice == "uvloop" and not uvloop_installed():
        raise event_loop_unavailable(choice, "uvloop is not installed (pip install uvloop, or choose asyncio)")
    if choice not in EVENT_LOOPS:
        raise event_loop_unavailable(choice, f"expected one of {', '.join(EVENT_LOOPS)}")
    return choice


def loop_factory(choice: str) -> LoopFactory:
    """A function that makes a new loop of the kind ``choice`` names."""
    if resolve(choice) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    try:
        factory = loop_factory(choice)
    except EventLoopUnavailable:
        main.close()  # never awaited: say nothing about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: what the running (or given) loop is, for logs."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
