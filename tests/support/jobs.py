"""Helpers for the jobs tests: how many Redis keys a test's prefix holds."""

from __future__ import annotations

import redis.asyncio as redis


async def key_count(client: redis.Redis, prefix: str) -> int:
    """How many Redis keys live under a test's prefix."""
    return len([k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)])
