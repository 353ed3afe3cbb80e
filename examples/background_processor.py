"""Core Components / 4. Background Processor: durable jobs in Redis with priorities, delays and stats."""

import asyncio
import time
from typing import Any

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")
notified: asyncio.Queue[str] = asyncio.Queue()


async def main() -> None:
    queue_name = f"agent_jobs_{int(time.time() * 1000)}"  # a fresh queue, so the figures below are this run's
    processor = raaf.BackgroundProcessor(workers=5, retry_count=3, queue_name=queue_name)

    # Register job handlers
    @processor.handle_job("process_message")
    async def process_message(data: dict[str, Any]) -> str:
        async with raaf.Runner(agent) as runner:
            result = await runner.run(data["message"])
        # Process result and notify
        await notified.put(f"notify {data['user_id']}: {result.messages[-1]['content']}")
        return result.output

    @processor.handle_job("batch_analysis")
    async def batch_analysis(data: dict[str, Any]) -> list[str]:
        async with raaf.Runner(agent) as runner:
            return [(await runner.run(message)).output for message in data["messages"]]

    @processor.handle_job("send_reminder")
    async def send_reminder(data: dict[str, Any]) -> None:
        await notified.put(f"remind {data['user_id']}: {data['message']}")

    # Start background processor
    await processor.start()

    # Enqueue jobs with priorities
    job_id = await processor.enqueue_job("process_message", {
        "agent_id": "agent123", "user_id": "user456", "message": "Process this in background",
    }, priority="high")
    print(await asyncio.wait_for(notified.get(), 30))
    print(f"job result: {await processor.job_result(job_id, timeout=30)}")

    batch_id = await processor.enqueue_job("batch_analysis", {"messages": ["one", "two"]})
    print(f"batch result: {await processor.job_result(batch_id, timeout=30)}")

    # Schedule delayed jobs (in an hour; it waits in Redis, not in this process)
    await processor.schedule_job("send_reminder", {
        "user_id": "user123", "message": "Don't forget about your meeting",
    }, in_=3600)

    # Monitor job queues
    stats = await processor.stats()
    print({key: stats[key] for key in ("running", "workers", "high_priority_queue", "normal_priority_queue",
                                       "low_priority_queue", "scheduled_jobs", "failed_jobs")})
    await processor.stop()


asyncio.run(main())
