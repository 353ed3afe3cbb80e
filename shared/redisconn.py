"""Redis connection pool from ``REDIS_URL``."""

from __future__ import annotations

import redis.asyncio as redis


def connect_redis(url: str, *, pool_size: int = 20) -> redis.Redis:
    """A client over a bounded pool; it connects lazily and reconnects on each command."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        max_connections=pool_size,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=10,
        retry_on_timeout=True,
    )
    return client
