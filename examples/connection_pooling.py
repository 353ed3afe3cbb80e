"""Performance Optimization / Connection Pooling: Redis pool and WebSocket limits, set once for everything."""

import asyncio
import time

import raaf


async def main() -> None:
    # Configure Redis connection pooling
    raaf.configure(background={
        "redis_url": raaf.configuration().background.redis_url,  # REDIS_URL (`make run`: the local Valkey)
        "pool_size": 20,
        "pool_timeout": 5,
        "pool_checkout_timeout": 5,
    })
    # WebSocket connection limits (connection_timeout: the time to authenticate; keepalive_interval: the pings)
    raaf.configure(websocket={"max_connections": 10000, "connection_timeout": 30, "keepalive_interval": 30})

    env = raaf.configuration().to_env()
    for name in ("REDIS_POOL_SIZE", "BACKGROUND_POOL_TIMEOUT", "WEBSOCKET_MAX_CONNECTIONS", "WEBSOCKET_AUTH_TIMEOUT",
                 "WEBSOCKET_HEARTBEAT_INTERVAL"):
        print(f"{name}={env[name]}")

    # Every processor of this process shares the configured Redis: many jobs, few connections
    processor = raaf.BackgroundProcessor(queue_name=f"pooling_{int(time.time() * 1000)}", workers=10)
    processor.handle_job("square", lambda data: data["n"] ** 2)
    await processor.start()
    ids = [await processor.enqueue_job("square", {"n": n}) for n in range(50)]
    results = [await processor.job_result(job_id, timeout=30) for job_id in ids]
    print(f"50 jobs done over one pool; sum of results: {sum(results)}")
    await processor.stop()

asyncio.run(main())
