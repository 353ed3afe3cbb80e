"""Plumbing every service shares: settings, NATS/JetStream/Redis connections, lifecycle, health, logs."""

from proto.subjects import InvalidNameError, decode_token, encode_token
from shared.app import App, ServiceSettings
from shared.errors import SettingsError, StackError
from shared.health import HealthRoutes
from shared.jetstream import ensure_stream
from shared.logs import configure_logging
from shared.metrics import RuntimeMetrics
from shared.natsconn import connect_nats
from shared.redisconn import connect_redis
from shared.service_main import run_service
from shared.settings import Env, RuntimeSettings

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
