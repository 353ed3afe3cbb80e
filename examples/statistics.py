"""Monitoring and Debugging / Statistics Collection: each component's stats, and the cluster's combined ones."""

import asyncio
import time

import msgspec

import raaf


async def main() -> None:
    # Some activity first, so there is something to count
    async with raaf.Runner("assistant") as runner:
        await runner.run("Count me")

    async with raaf.AsyncRunner() as async_runner, raaf.EventEmitter() as event_emitter:
        background_processor = raaf.BackgroundProcessor(queue_name=f"stats_{int(time.time() * 1000)}")
        message_queue = raaf.MessageQueue(name=f"stats_{int(time.time() * 1000)}")
        # Collect comprehensive statistics (this process's components)
        stats = {
            "async_runner": async_runner.stats(),
            "background_processor": await background_processor.stats(),
            "message_queue": await message_queue.stats(),
            "event_emitter": event_emitter.stats(),
        }
        print(f"components: {sorted(stats)}")
        await background_processor.stop()
        await message_queue.close()

    # Combined system statistics: every service replica, summed by the metrics service
    all_stats = await raaf.stats()
    as_dict = msgspec.to_builtins(all_stats)
    print(f"sections: {[key for key in as_dict if key not in ('at', 'type')]}")
    print(f"services answering: {sorted(as_dict['services'])}")
    print(f"runs completed so far > 0: {all_stats.async_runner.completed > 0}")


asyncio.run(main())
