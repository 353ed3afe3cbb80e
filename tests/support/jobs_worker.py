"""A job worker process for the crash tests: ``python -m tests.support.jobs_worker`` (settings from the environment).

Its ``work`` handler sleeps ``data["sleep"]`` seconds, then counts its side effect once in Redis under
``<prefix>:effects:<job id>:<attempt>``, so a test can tell which attempts got as far as their side effect.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import redis.asyncio as redis

from raaf.jobs import BackgroundProcessor, current_job


async def main() -> None:
    processor = BackgroundProcessor.from_env()
    effects = redis.Redis.from_url(os.environ["REDIS_URL"])

    @processor.handle_job("work")
    async def work(data: dict[str, Any]) -> dict[str, int]:
        await asyncio.sleep(float(data.get("sleep", 0.01)))
        job = current_job()
        await effects.incr(f"{processor.prefix}:effects:{job.job_id}:{job.attempt}")
        return {"attempt": job.attempt}

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await processor.start()
    print("READY", flush=True)
    await stop.wait()
    await processor.stop()
    await effects.aclose()


if __name__ == "__main__":
    asyncio.run(main())
