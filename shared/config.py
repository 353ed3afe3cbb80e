"""``raaf.configure(...)``: the seed's configuration sections, each key one of the settings' declared variables.

Precedence, lowest to highest: built-in defaults < environment variables < ``configure(...)``. The environment is
read whenever ``configuration()`` is asked (a variable set later counts), and only the keys ``configure`` set
override it. The services read the environment; ``Config.to_env()`` / ``environ()`` render a configuration as
those variables, so the Python API (``Runner``, ``EventEmitter``, ``BackgroundProcessor`` ...) and services it
starts see the same settings. A key's default and bounds are its variable's declaration (``Setting``, beside the
settings dataclass that reads it), so a key and its variable cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from shared.chat import settings as chat
from shared.errors import ConfigurationError, SettingsError
from shared.events import settings as events
from shared.gateway import settings as gateway
from shared.jobs import settings as jobs
from shared.runs import settings as runs
from shared.service import settings as runtime
from shared.service.overrides import configured_environ, reset_variables, set_variables
from shared.service.settings import Env, Setting

Value = int | float | bool | str
Key = Setting[Any]

# Read only through configuration(): where the examples and clients find the gateway.
GATEWAY_URL = Setting("RAAF_GATEWAY_URL", "http://127.0.0.1:8080", schemes=("http", "https"))

# Section -> key -> the declaration of the variable it sets (name, default and bounds live there, once). Two keys
# of one section that share a declaration are one setting under two names (the seed's aliases).
SCHEMA: dict[str, dict[str, Key]] = {
    "platform": {
        "nats_url": runtime.NATS_URL,
        "prefix": runtime.PREFIX,
        "gateway_url": GATEWAY_URL,
    },
    "websocket": {
        "port": gateway.PORT,
        "host": gateway.HOST,
        "max_connections": gateway.MAX_CONNECTIONS,
        "heartbeat_interval": gateway.HEARTBEAT_INTERVAL,
        "enable_compression": gateway.ENABLE_COMPRESSION,
        "connection_timeout": gateway.AUTH_TIMEOUT,
        "keepalive_interval": gateway.HEARTBEAT_INTERVAL,
    },
    "streaming": {
        "chunk_size": runs.CHUNK_SIZE,
        "buffer_size": runs.BUFFER_SIZE,
        "timeout": runs.TIMEOUT,
        "enable_sse": gateway.ENABLE_SSE,
    },
    "async": {
        "pool_size": runs.POOL_SIZE,
        "queue_size": runs.QUEUE_SIZE,
    },
    "background": {
        "redis_url": runtime.REDIS_URL,
        "workers": jobs.WORKERS,
        "retry_count": jobs.RETRY_COUNT,
        "retry_delay": jobs.RETRY_DELAY,
        "pool_size": runtime.REDIS_POOL_SIZE,
        "pool_timeout": jobs.POOL_TIMEOUT,
        "pool_checkout_timeout": jobs.POOL_TIMEOUT,
    },
    "events": {
        "max_listeners": events.MAX_LISTENERS,
        "enable_wildcards": events.ENABLE_WILDCARDS,
        "enable_history": events.ENABLE_HISTORY,
        "history_size": events.HISTORY_SIZE,
    },
    "chat": {
        "max_rooms": chat.MAX_ROOMS,
        "max_participants_per_room": chat.MAX_PARTICIPANTS_PER_ROOM,
        "message_history_size": chat.MESSAGE_HISTORY_SIZE,
        "enable_typing_indicators": chat.ENABLE_TYPING_INDICATORS,
        "max_message_length": chat.MAX_MESSAGE_LENGTH,
        "rate_limit": chat.RATE_LIMIT,
    },
}


def _parse(env: Env, key: Key) -> Value:
    value: Value = key.read(env)
    return value


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
        keys = SCHEMA[self._name]
        spec = keys.get(key)
        if spec is None:
            raise ConfigurationError(f"unknown configuration key {self._name}.{key}")
        coerced = _coerce(self._name, key, spec, value)
        for name, other in keys.items():
            if other is spec:  # an alias is the same setting: both names show the new value
                self._values[name] = coerced
                self._touched.add(name)

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


def configuration() -> Config:
    """The configuration in force: defaults, then the environment as it is now, then what ``configure`` set.

    A snapshot: change it with ``configure``, not by assigning to the returned object.
    """
    return Config(configured_environ())


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
    set_variables({SCHEMA[name][key].env: _render(value)
                   for name, values in trial.set_keys().items() for key, value in values.items()})
    return configuration()


def reset_configuration() -> None:
    """Forget everything ``configure`` set: back to defaults and the environment (for tests)."""
    reset_variables()
