"""``raaf.configure(...)``: the seed's configuration sections, one-to-one with the services' env variables.

Precedence, lowest to highest: built-in defaults < environment variables < ``configure(...)``. The environment is
read whenever ``configuration()`` is asked (a variable set later counts), and only the keys ``configure`` set
override it. The services read the environment; ``Config.to_env()`` / ``environ()`` render a configuration as
those variables, so the Python API (``Runner``, ``EventEmitter``, ``BackgroundProcessor`` ...) and services it
starts see the same settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import ConfigurationError, SettingsError
from shared.service.settings import Env

Value = int | float | bool | str


@dataclass(frozen=True)
class Key:
    env: str
    kind: type
    default: Value
    low: float | None = None
    high: float | None = None


def _k(env: str, kind: type, default: Value, low: float | None = None, high: float | None = None) -> Key:
    return Key(env, kind, default, low, high)


# Section -> key -> (env variable, type, default, bounds). The env name is SECTION_KEY except where the seed
# already named it otherwise (background.redis_url is REDIS_URL, background.pool_size is REDIS_POOL_SIZE).
SCHEMA: dict[str, dict[str, Key]] = {
    "platform": {
        "nats_url": _k("NATS_URL", str, "nats://127.0.0.1:4222"),
        "prefix": _k("RAAF_PREFIX", str, "raaf"),
        "gateway_url": _k("RAAF_GATEWAY_URL", str, "http://127.0.0.1:8080"),
        "metrics_url": _k("RAAF_METRICS_URL", str, "http://127.0.0.1:9100"),
    },
    "websocket": {
        "port": _k("WEBSOCKET_PORT", int, 8080, 0, 65535),
        "host": _k("WEBSOCKET_HOST", str, "0.0.0.0"),
        "max_connections": _k("WEBSOCKET_MAX_CONNECTIONS", int, 5000, 1),
        "heartbeat_interval": _k("WEBSOCKET_HEARTBEAT_INTERVAL", float, 30.0, 0.1),
        "enable_compression": _k("WEBSOCKET_ENABLE_COMPRESSION", bool, True),
        "connection_timeout": _k("WEBSOCKET_CONNECTION_TIMEOUT", float, 30.0, 0.1),
        "keepalive_interval": _k("WEBSOCKET_KEEPALIVE_INTERVAL", float, 30.0, 0.1),
    },
    "streaming": {
        "chunk_size": _k("STREAMING_CHUNK_SIZE", int, 1024, 1),
        "buffer_size": _k("STREAMING_BUFFER_SIZE", int, 8192, 1),
        "timeout": _k("STREAMING_TIMEOUT", float, 60.0, 0.1),
        "enable_sse": _k("STREAMING_ENABLE_SSE", bool, True),
    },
    "async": {
        "pool_size": _k("ASYNC_POOL_SIZE", int, 20, 1),
        "queue_size": _k("ASYNC_QUEUE_SIZE", int, 1000, 0),
        "thread_timeout": _k("ASYNC_THREAD_TIMEOUT", float, 30.0, 0.1),
    },
    "background": {
        "redis_url": _k("REDIS_URL", str, "redis://127.0.0.1:6379/0"),
        "workers": _k("BACKGROUND_WORKERS", int, 10, 1),
        "retry_count": _k("BACKGROUND_RETRY_COUNT", int, 3, 0),
        "retry_delay": _k("BACKGROUND_RETRY_DELAY", float, 5.0, 0),
        "pool_size": _k("REDIS_POOL_SIZE", int, 20, 1),
        "pool_timeout": _k("BACKGROUND_POOL_TIMEOUT", float, 5.0, 0),
        "pool_checkout_timeout": _k("BACKGROUND_POOL_CHECKOUT_TIMEOUT", float, 5.0, 0),
    },
    "events": {
        "max_listeners": _k("EVENTS_MAX_LISTENERS", int, 100, 1),
        "enable_wildcards": _k("EVENTS_ENABLE_WILDCARDS", bool, True),
        "enable_history": _k("EVENTS_ENABLE_HISTORY", bool, True),
        "history_size": _k("EVENTS_HISTORY_SIZE", int, 1000, 0),
    },
    "chat": {
        "max_rooms": _k("CHAT_MAX_ROOMS", int, 100, 1),
        "max_participants_per_room": _k("CHAT_MAX_PARTICIPANTS_PER_ROOM", int, 50, 1),
        "message_history_size": _k("CHAT_MESSAGE_HISTORY_SIZE", int, 500, 0),
        "enable_typing_indicators": _k("CHAT_ENABLE_TYPING_INDICATORS", bool, True),
        "max_message_length": _k("CHAT_MAX_MESSAGE_LENGTH", int, 2000, 1),
        "rate_limit": _k("CHAT_RATE_LIMIT", int, 60, 1),
    },
}


def _parse(env: Env, key: Key) -> Value:
    if key.kind is bool:
        return env.boolean(key.env, bool(key.default))
    if key.kind is int:
        return env.integer(key.env, int(key.default), min=_int(key.low), max=_int(key.high))
    if key.kind is float:
        return env.number(key.env, float(key.default), min=key.low, max=key.high)
    return env.string(key.env, str(key.default))


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


class Section:
    """One configuration section; setting an unknown key or a bad value raises :class:`ConfigurationError`."""

    __slots__ = ("_name", "_touched", "_values")
    _name: str
    _values: dict[str, Value]
    _touched: set[str]

    def __init__(self, name: str, values: dict[str, Value]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_touched", set())

    def __getattr__(self, key: str) -> Value:
        if key.startswith("_") or key not in self._values:
            raise ConfigurationError(f"unknown configuration key {self._name}.{key}")
        return self._values[key]

    def __setattr__(self, key: str, value: Any) -> None:
        spec = SCHEMA[self._name].get(key)
        if spec is None:
            raise ConfigurationError(f"unknown configuration key {self._name}.{key}")
        self._values[key] = _coerce(self._name, key, spec, value)
        self._touched.add(key)

    def as_dict(self) -> dict[str, Value]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name}, {self._values})"


def _coerce(section: str, key: str, spec: Key, value: Any) -> Value:
    """Validate a value given in Python by the same rules as its environment variable."""
    if spec.kind is bool and not isinstance(value, bool):
        raise ConfigurationError(f"{section}.{key} must be true or false, not {value!r}")
    if spec.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigurationError(f"{section}.{key} must be a number, not {value!r}")
    if spec.kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigurationError(f"{section}.{key} must be a whole number, not {value!r}")
    if spec.kind is str and not isinstance(value, str):
        raise ConfigurationError(f"{section}.{key} must be a string, not {value!r}")
    try:
        return _parse(Env({spec.env: _render(value)}), spec)
    except SettingsError as exc:
        raise ConfigurationError(f"{section}.{key}: {exc.reason} (got {value!r})") from None


def _render(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Config:
    """The whole configuration: ``config.websocket.port``, ``config.async_.pool_size`` (``async`` is a keyword)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = Env(environ)
        self._sections: dict[str, Section] = {}
        for name, keys in SCHEMA.items():
            try:
                values = {key: _parse(env, spec) for key, spec in keys.items()}
            except SettingsError as exc:
                raise ConfigurationError(str(exc)) from None
            self._sections[name] = Section(name, values)

    def __getattr__(self, name: str) -> Section:
        sections: dict[str, Section] = self.__dict__.get("_sections", {})
        key = "async" if name == "async_" else name
        if key not in sections:
            raise ConfigurationError(f"unknown configuration section {name!r}")
        return sections[key]

    def update(self, sections: Mapping[str, Mapping[str, Any]]) -> None:
        for name, values in sections.items():
            section = getattr(self, name)
            for key, value in values.items():
                setattr(section, key, value)

    def as_dict(self) -> dict[str, dict[str, Value]]:
        return {name: section.as_dict() for name, section in self._sections.items()}

    def to_env(self) -> dict[str, str]:
        """Every setting as the environment variable the services read."""
        return {spec.env: _render(self._sections[name].as_dict()[key])
                for name, keys in SCHEMA.items() for key, spec in keys.items()}

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: the process environment) with every setting of this configuration on top."""
        return {**(os.environ if base is None else base), **self.to_env()}

    def set_keys(self) -> dict[str, dict[str, Value]]:
        """The keys set on this object (by ``configure`` or assignment), section by section."""
        return {name: {key: section.as_dict()[key] for key in section._touched}
                for name, section in self._sections.items() if section._touched}


_lock = threading.Lock()
_overrides: dict[str, dict[str, Value]] = {}


def configuration() -> Config:
    """The configuration in force: defaults, then the environment as it is now, then what ``configure`` set.

    A snapshot: change it with ``configure``, not by assigning to the returned object.
    """
    config = Config()
    with _lock:
        overrides = {name: dict(values) for name, values in _overrides.items()}
    config.update(overrides)
    return config


def configure(block: Callable[[Config], None] | None = None, /, **sections: Mapping[str, Any]) -> Config:
    """Change the configuration: ``configure(websocket={"port": 9000})`` or ``configure(lambda c: ...)``.

    Use ``async_=`` (or ``**{"async": {...}}``) for the ``async`` section. Unknown sections or keys and bad
    values raise :class:`ConfigurationError` and change nothing.
    """
    trial = configuration()
    normalized = {("async" if k == "async_" else k): v for k, v in sections.items()}
    trial.update(normalized)
    if block is not None:
        block(trial)
    with _lock:
        for name, values in trial.set_keys().items():
            _overrides.setdefault(name, {}).update(values)
    return configuration()


def configured_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: the process environment) with the variables of the keys ``configure`` set on top:
    what a settings reader (``EventSettings.from_env``, ``BackgroundProcessor.from_env``, a service) should see."""
    with _lock:
        overrides = [(SCHEMA[name][key], value) for name, values in _overrides.items() for key, value in values.items()]
    return {**(os.environ if base is None else base), **{spec.env: _render(value) for spec, value in overrides}}


def reset_configuration() -> None:
    """Forget everything ``configure`` set: back to defaults and the environment (for tests)."""
    with _lock:
        _overrides.clear()
