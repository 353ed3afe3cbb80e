"""Typed settings from environment variables, with errors that name the variable."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from proto.subjects import InvalidNameError, check_prefix
from shared.errors import EventLoopUnavailable, SettingsError
from shared.service.eventloop import EVENT_LOOPS, resolve
from shared.tracing.settings import VARIABLES as TRACING_VARIABLES
from shared.tracing.settings import TracingSettings

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Env:
    """Reads typed values from an environment mapping; every bad value raises :class:`SettingsError`."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def string(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int, *, min: int | None = None, max: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(name, value, "expected an integer") from None
        self._check_range(name, value, number, min, max)
        return number

    def number(
        self, name: str, default: float, *, min: float | None = None, max: float | None = None
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(name, value, "expected a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise SettingsError(name, value, "expected a finite number")
        self._check_range(name, value, number, min, max)
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(name, value, "expected true/false (1/0, yes/no, on/off)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise SettingsError(name, value, f"expected one of {', '.join(choices)}")
        return value

    def items(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, min=0, max=65535)

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        value = self.string(name, default)
        for url in value.split(","):
            scheme, sep, rest = url.strip().partition("://")
            if not sep or scheme not in schemes or not rest:
                raise SettingsError(name, value, f"expected a URL with scheme {' or '.join(schemes)}")
        return value

    @staticmethod
    def _check_range(
        name: str, value: str, number: float, low: float | None, high: float | None
    ) -> None:
        if low is not None and number < low:
            raise SettingsError(name, value, f"must be >= {low}")
        if high is not None and number > high:
            raise SettingsError(name, value, f"must be <= {high}")


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """What every service needs: where NATS/Redis are, its HTTP side port, logging, shutdown."""

    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_pool_size: int = 20
    prefix: str = "raaf"
    http_host: str = "0.0.0.0"
    http_port: int = 0
    log_level: str = "info"
    log_format: str = "json"
    shutdown_timeout: float = 25.0
    nats_reconnect_wait: float = 1.0
    nats_ping_interval: float = 10.0
    jetstream_replicas: int = 1
    instance_id: str = ""
    stats_timeout: float = 2.0
    event_loop: str = "auto"  # auto | uvloop | asyncio (shared/service/eventloop.py)
    tracing: TracingSettings = field(default_factory=TracingSettings)  # the OTEL_* variables (shared/tracing/)

    @classmethod
    def from_env(cls, env: Env, *, default_http_port: int) -> RuntimeSettings:
        prefix = env.string("RAAF_PREFIX", "raaf")
        try:
            check_prefix(prefix)
        except InvalidNameError as exc:
            raise SettingsError("RAAF_PREFIX", prefix, exc.reason) from None
        event_loop = env.choice("RAAF_EVENT_LOOP", cls.event_loop, EVENT_LOOPS)
        try:
            resolve(event_loop)
        except EventLoopUnavailable as exc:
            raise SettingsError("RAAF_EVENT_LOOP", event_loop, exc.reason) from None
        return cls(
            nats_url=env.url("NATS_URL", cls.nats_url, ("nats", "tls", "ws", "wss")),
            redis_url=env.url("REDIS_URL", cls.redis_url, ("redis", "rediss", "unix")),
            redis_pool_size=env.integer("REDIS_POOL_SIZE", cls.redis_pool_size, min=1, max=10_000),
            prefix=prefix,
            http_host=env.string("HTTP_HOST", cls.http_host),
            http_port=env.port("HTTP_PORT", default_http_port),
            log_level=env.choice("LOG_LEVEL", cls.log_level, ("debug", "info", "warning", "error")),
            log_format=env.choice("LOG_FORMAT", cls.log_format, ("json", "text")),
            shutdown_timeout=env.number("SHUTDOWN_TIMEOUT", cls.shutdown_timeout, min=0, max=3600),
            nats_reconnect_wait=env.number("NATS_RECONNECT_WAIT", cls.nats_reconnect_wait, min=0.05, max=60),
            nats_ping_interval=env.number("NATS_PING_INTERVAL", cls.nats_ping_interval, min=1, max=600),
            jetstream_replicas=env.integer("JETSTREAM_REPLICAS", cls.jetstream_replicas, min=1, max=5),
            instance_id=env.string("INSTANCE_ID", default_instance_id()),
            stats_timeout=env.number("STATS_TIMEOUT", cls.stats_timeout, min=0.01, max=60),
            event_loop=event_loop,
            tracing=TracingSettings.from_environ({name: env.raw(name) for name in TRACING_VARIABLES}),
        )
