"""Performance Optimization / Async Processing Best Practices: bounded pools, batches, backpressure."""

import asyncio
import os

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")


async def main() -> None:
    # Use appropriate pool sizes: runs execute on the agent-runners, so this bounds what one process has in flight
    async with raaf.AsyncRunner(pool_size=min(20, (os.cpu_count() or 1) * 2), queue_size=1000,
                                timeout=30) as async_runner:
        requests = [f"request {n}" for n in range(25)]
        handled: list[str] = []

        # Process in batches when possible
        for start in range(0, len(requests), 10):
            batch = requests[start:start + 10]
            ids = [async_runner.process_async(agent, request, lambda result: handled.append(result.output))
                   for request in batch]
            await async_runner.wait_for_tasks(ids, timeout=30)
        print(f"handled {len(handled)} requests; last: {sorted(handled)[-1]}")

    # Beyond pool_size + queue_size a submission fails at once instead of piling up
    async with raaf.AsyncRunner(pool_size=1, queue_size=1) as tiny:
        tiny.process_async(agent, "one")
        tiny.process_async(agent, "two")
        try:
            tiny.process_async(agent, "three")
        except raaf.OverloadedError as error:
            print(f"OverloadedError: {error}")


asyncio.run(main())
