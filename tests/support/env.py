"""Where a test runs: the repository root, a prefix no other test uses, and a service's test environment."""

from __future__ import annotations

import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unique_prefix(tag: str = "t") -> str:
    """A subject prefix no other test uses, so subjects, streams and Redis keys never collide."""
    return f"{tag}{uuid.uuid4().hex[:12]}"


def service_env(nats_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a service under test: fast reconnects, free HTTP port, a test prefix."""
    env = {
        "NATS_URL": nats_url,
        "REDIS_URL": redis_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "WEBSOCKET_PORT": "0",
        "NATS_RECONNECT_WAIT": "0.2",
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env
