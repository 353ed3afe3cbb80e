"""Errors raised by the shared runtime."""

from __future__ import annotations


class RuntimeError_(Exception):
    """Base of every error the shared runtime raises."""


class SettingsError(RuntimeError_):
    """An environment variable holds a value the service cannot use."""

    def __init__(self, variable: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {variable}={value!r}: {reason}")
        self.variable = variable
        self.value = value
        self.reason = reason


class RunIdTaken(RuntimeError_):
    """A run's first event could not be stored: its subject already holds events (the id was used before)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run id {run_id!r} was used before")
        self.run_id = run_id


class StackError(RuntimeError_):
    """A local server (nats-server, valkey-server) could not be found or started."""


class EventLoopUnavailable(RuntimeError_):
    """The event loop a setting names cannot be used in this process (``RAAF_EVENT_LOOP``)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"event loop {name!r}: {reason}")
        self.name = name
        self.reason = reason
