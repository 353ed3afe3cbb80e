"""What ``raaf.configure(...)`` set, kept as the environment variables it stands for, on top of the environment.

The engines (``BackgroundProcessor``, ``EventEmitter``, ``StreamProcessor`` ...) read their declared settings
through :func:`configured`, so they see ``configure`` without importing it; ``shared.config`` writes here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from shared.errors import ConfigurationError, SettingsError
from shared.service.settings import Env, Setting, T

_lock = threading.Lock()
_variables: dict[str, str] = {}


def configured_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: the process environment) with the variables ``configure`` set on top: what a settings
    reader (``EventSettings.from_env``, ``BackgroundProcessor.from_env``, a service) should see."""
    with _lock:
        variables = dict(_variables)
    return {**(os.environ if base is None else base), **variables}


def configured(setting: Setting[T]) -> T:
    """The value in force for ``setting``: default < environment < ``configure``; a bad value is a
    :class:`ConfigurationError` naming the variable."""
    try:
        return setting.read(Env(configured_environ()))
    except SettingsError as exc:
        raise ConfigurationError(str(exc)) from None


def set_variables(variables: Mapping[str, str]) -> None:
    """Record settings given in Python, as the variables (already validated) they stand for."""
    with _lock:
        _variables.update(variables)


def reset_variables() -> None:
    """Forget everything ``configure`` set."""
    with _lock:
        _variables.clear()
