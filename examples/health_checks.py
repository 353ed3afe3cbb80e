"""Monitoring and Debugging / Health Checks: every service's readiness, Redis, and the local components."""

import asyncio
import time
from typing import Any

import redis.asyncio as redis

import raaf


class HealthChecker:
    @staticmethod
    async def check_all() -> dict[str, Any]:
        return {
            "cluster": await HealthChecker.check_cluster(),
            "redis_connection": await HealthChecker.check_redis_connection(),
            "background_processor": await HealthChecker.check_background_processor(),
        }

    @staticmethod
    async def check_cluster() -> dict[str, Any]:
        # Every instance of every service and what its /readyz says (via the metrics service); `status` is ok,
        # degraded (some instance not ready) or down. Not printed here: the test runs examples side by side, and
        # their own in-process gateways come and go.
        health = await raaf.health()
        services = sorted({instance.service for instance in health.instances if instance.ready})
        return {"ready_services": services, "status_known": health.status in ("ok", "degraded", "down")}

    @staticmethod
    async def check_redis_connection() -> dict[str, Any]:
        client = redis.Redis.from_url(str(raaf.configuration().background.redis_url))
        try:
            info = await client.info()
            return {"connected": await client.ping(), "has_memory_figure": "used_memory" in info,
                    "has_client_count": "connected_clients" in info}
        finally:
            await client.aclose()

    @staticmethod
    async def check_background_processor() -> dict[str, Any]:
        processor = raaf.BackgroundProcessor(queue_name=f"health_{int(time.time() * 1000)}")
        try:
            stats = await processor.stats()
            return {"running": stats["running"], "failed_jobs": stats["failed_jobs"]}
        finally:
            await processor.stop()


async def main() -> None:
    for name, result in (await HealthChecker.check_all()).items():
        print(f"{name}: {result}")


asyncio.run(main())
