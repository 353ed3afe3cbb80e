"""Typed settings from environment variables, with errors that name the variable."""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from proto.subjects import check_prefix
from shared.errors import EventLoopUnavailable, invalid_setting
from shared.nats.auth import NatsAuth
from shared.redisconn import parse_redis_url
from shared.service.eventloop import EVENT_LOOPS, resolve
from shared.tracing.settings import VARIABLES as TRACING_VARIABLES
from shared.tracing.settings import TracingSettings

T = TypeVar("T", str, int, float, bool)

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
            raise invalid_setting(name, value, "expected an integer") from None
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
            raise invalid_setting(name, value, "expected a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise invalid_setting(name, value, "expected a finite number")
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
        raise invalid_setting(name, value, "expected true/false (1/0, yes/no, on/off)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise invalid_setting(name, value, f"expected one of {', '.join(choices)}")
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
                raise invalid_setting(name, value, f"expected a URL with scheme {' or '.join(schemes)}")
        return value

    @staticmethod
    def _check_range(
        name: str, value: str, number: float, low: float | None, high: float | None
    ) -> None:
        if low is not None and number < low:
            raise invalid_setting(name, value, f"must be >= {low}")
        if high is not None and number > high:
            raise invalid_setting(name, value, f"must be <= {high}")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable, declared once: its name, default (whose type is the setting's) and bounds.

    The settings dataclasses read it with :meth:`read` and take their field default from it; ``raaf.configure``
    (``shared.config``) validates the same key by the same declaration.
    """

    env: str
    default: T
    min: float | None = None  # inclusive
    max: float | None = None  # inclusive
    schemes: tuple[str, ...] = ()  # a string that must be a URL (or a comma-separated list) with one of these
    check: Callable[[T], object] | None = None  # raises ValueError (``reason``, else its text) for a bad value

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            return
        default = self.default
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise ValueError(f"{self.env}: bounds on a {self.kind.__name__} setting")
        if (self.min is not None and default < self.min) or (self.max is not None and default > self.max):
            raise ValueError(f"{self.env}: default {default!r} outside {self.bounds()}")

    @property
    def kind(self) -> type:
        return type(self.default)

    def read(self, env: Env) -> T:
        value = self._typed(env)
        if self.check is not None:
            try:
                self.check(value)
            except ValueError as exc:
                # The error line is logged and printed: never with a password in it.
                raise invalid_setting(self.env, _PASSWORD_IN_URL.sub(r"\1***@", str(value)),
                                      str(getattr(exc, "reason", exc))) from None
        return value

    def _typed(self, env: Env) -> T:
        default = self.default
        if isinstance(default, bool):
            return env.boolean(self.env, default)
        if isinstance(default, int):
            return env.integer(self.env, default, min=_whole(self.min), max=_whole(self.max))
        if isinstance(default, float):
            return env.number(self.env, default, min=self.min, max=self.max)
        if self.schemes:
            return env.url(self.env, default, self.schemes)
        return env.string(self.env, default)

    def bounds(self) -> str:
        """``low..high``, ``low..``, ``..high`` or empty (as docs/configuration.md shows them)."""
        if self.min is None and self.max is None:
            return ""
        return f"{_plain(self.min)}..{_plain(self.max)}"


def _whole(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _plain(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


NATS_URL = Setting("NATS_URL", "nats://127.0.0.1:4222", schemes=("nats", "tls", "ws", "wss"))
# NATS credentials and TLS (shared/nats/auth.py); credentials in NATS_URL work too.
NATS_USER = Setting("NATS_USER", "")
NATS_PASSWORD = Setting("NATS_PASSWORD", "")
NATS_CREDS = Setting("NATS_CREDS", "")
NATS_TLS_CA = Setting("NATS_TLS_CA", "")
NATS_TLS_CERT = Setting("NATS_TLS_CERT", "")
NATS_TLS_KEY = Setting("NATS_TLS_KEY", "")
REDIS_URL = Setting("REDIS_URL", "redis://127.0.0.1:6379/0", check=parse_redis_url)  # one server, Sentinel or Cluster
REDIS_POOL_SIZE = Setting("REDIS_POOL_SIZE", 20, min=1, max=10_000)
PREFIX = Setting("RAAF_PREFIX", "raaf", check=check_prefix)
SHUTDOWN_TIMEOUT = Setting("SHUTDOWN_TIMEOUT", 25.0, min=0, max=3600)


_PASSWORD_IN_URL = re.compile(r"(://[^:@/]*:)[^@/]*@")


def read_nats_auth(env: Env) -> NatsAuth:
    """``NATS_USER`` / ``NATS_PASSWORD`` / ``NATS_CREDS`` and the ``NATS_TLS_*`` files."""
    auth = NatsAuth(user=NATS_USER.read(env), password=NATS_PASSWORD.read(env), creds=NATS_CREDS.read(env),
                    tls_ca=NATS_TLS_CA.read(env), tls_cert=NATS_TLS_CERT.read(env), tls_key=NATS_TLS_KEY.read(env))
    if auth.password and not auth.user:
        raise invalid_setting(NATS_PASSWORD.env, "***", "set NATS_USER too")
    if auth.user and not auth.password:
        # An empty Secret: better to stop here, naming it, than to retry a refused login forever.
        raise invalid_setting(NATS_PASSWORD.env, "", f"empty, but NATS_USER={auth.user} needs its password")
    if bool(auth.tls_cert) != bool(auth.tls_key):
        raise invalid_setting(NATS_TLS_CERT.env, auth.tls_cert, "NATS_TLS_CERT and NATS_TLS_KEY go together")
    return auth


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, kw_only=True)
class RuntimeSettings:
    """What every service needs: where NATS/Redis are, its HTTP side port, logging, shutdown."""

    nats_url: str = NATS_URL.default
    nats_auth: NatsAuth = field(default_factory=NatsAuth)
    redis_url: str = REDIS_URL.default
    redis_pool_size: int = REDIS_POOL_SIZE.default
    prefix: str = PREFIX.default
    http_host: str = "0.0.0.0"
    http_port: int = 0
    log_level: str = "info"
    log_format: str = "json"
    shutdown_timeout: float = SHUTDOWN_TIMEOUT.default
    nats_reconnect_wait: float = 1.0
    nats_ping_interval: float = 10.0
    jetstream_replicas: int = 1
    instance_id: str = ""
    stats_timeout: float = 2.0
    event_loop: str = "auto"  # auto | uvloop | asyncio (shared/service/eventloop.py)
    tracing: TracingSettings = field(default_factory=TracingSettings)  # the OTEL_* variables (shared/tracing/)

    @classmethod
    def from_env(cls, env: Env, *, default_http_port: int) -> RuntimeSettings:
        event_loop = env.choice("RAAF_EVENT_LOOP", cls.event_loop, EVENT_LOOPS)
        try:
            resolve(event_loop)
        except EventLoopUnavailable as exc:
            raise invalid_setting("RAAF_EVENT_LOOP", event_loop, exc.reason or exc.message) from None
        return cls(
            nats_url=NATS_URL.read(env),
            nats_auth=read_nats_auth(env),
            redis_url=REDIS_URL.read(env),
            redis_pool_size=REDIS_POOL_SIZE.read(env),
            prefix=PREFIX.read(env),
            http_host=env.string("HTTP_HOST", cls.http_host),
            http_port=env.port("HTTP_PORT", default_http_port),
            log_level=env.choice("LOG_LEVEL", cls.log_level, ("debug", "info", "warning", "error")),
            log_format=env.choice("LOG_FORMAT", cls.log_format, ("json", "text")),
            shutdown_timeout=SHUTDOWN_TIMEOUT.read(env),
            nats_reconnect_wait=env.number("NATS_RECONNECT_WAIT", cls.nats_reconnect_wait, min=0.05, max=60),
            nats_ping_interval=env.number("NATS_PING_INTERVAL", cls.nats_ping_interval, min=1, max=600),
            jetstream_replicas=env.integer("JETSTREAM_REPLICAS", cls.jetstream_replicas, min=1, max=5),
            instance_id=env.string("INSTANCE_ID", default_instance_id()),
            stats_timeout=env.number("STATS_TIMEOUT", cls.stats_timeout, min=0.01, max=60),
            event_loop=event_loop,
            tracing=TracingSettings.from_environ({name: env.raw(name) for name in TRACING_VARIABLES}),
        )
