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


class StackError(RuntimeError_):
    """A local server (nats-server, valkey-server) could not be found or started."""
