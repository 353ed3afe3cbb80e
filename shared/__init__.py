"""Plumbing every service shares: settings, NATS/JetStream/Redis connections, lifecycle, health, logs."""

from proto.subjects import InvalidNameError, decode_token, encode_token
from shared.errors import SettingsError, StackError
from shared.metrics.runtime import RuntimeMetrics
from shared.nats.conn import connect_nats
from shared.nats.jetstream import ensure_stream
from shared.redisconn import connect_redis
from shared.service.app import App, ServiceSettings
from shared.service.health import HealthRoutes
from shared.service.logs import configure_logging
from shared.service.main import run_service
from shared.service.settings import Env, RuntimeSettings

__all__ = [
    "App",
    "Env",
    "HealthRoutes",
    "InvalidNameError",
    "RuntimeMetrics",
    "RuntimeSettings",
    "ServiceSettings",
    "SettingsError",
    "StackError",
    "configure_logging",
    "connect_nats",
    "connect_redis",
    "decode_token",
    "encode_token",
    "ensure_stream",
    "run_service",
]
