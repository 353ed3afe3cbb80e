"""Performance Optimization / Batch Processing: a Redis-backed message queue handed out in batches."""

import asyncio
import time
from typing import Any

import raaf


async def main() -> None:
    # Process messages in batches for better performance
    queue = raaf.MessageQueue(name=f"messages_{int(time.time() * 1000)}", batch_size=100)
    await queue.push_many([{"content": f"message {n}"} for n in range(5)])

    async with raaf.AsyncRunner(pool_size=5) as pool:
        async def handle(messages: list[Any]) -> None:
            # Process batch of messages, concurrently
            results = [pool.process_async("assistant", message["content"]) for message in messages]
            outcomes = await pool.wait_for_tasks(results, timeout=30)
            # Batch store results
            outputs = [o.output for o in outcomes.values() if isinstance(o, raaf.RunResult)]
            print(f"batch of {len(messages)}: {outputs}")

        # One batch of up to 50 (process_messages(...) loops until queue.stop())
        handled = await queue.process_batch(handle, batch_size=50)
    print(f"handled {handled}; left: {(await queue.stats())['pending']}")
    await queue.close()


asyncio.run(main())
