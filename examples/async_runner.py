"""Core Components / 3. Async Runner: pool, concurrency, waiting, retries and a streaming session."""

import asyncio

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")
support_agent = raaf.Agent(name="support", instructions="Support.")
sales_agent = raaf.Agent(name="sales", instructions="Sales.")
tech_agent = raaf.Agent(name="tech", instructions="Tech.")


async def main() -> None:
    async with raaf.AsyncRunner(pool_size=20, queue_size=500, timeout=60) as async_runner:
        # Single async processing
        task_id = async_runner.process_async(agent, "Process this message")

        # Concurrent processing of multiple agents
        agents = [support_agent, sales_agent, tech_agent]
        task_ids = async_runner.process_concurrent(agents, "Handle customer query")

        # Wait for completion: each task's RunResult, or the typed error it ended with
        results = await async_runner.wait_for_tasks([task_id, *task_ids], timeout=30)
        for tid, result in results.items():
            assert isinstance(result, raaf.RunResult), result
            print(f"{tid} {result.agent}: {result.messages[-1]['content']}")

        # Processing with retry logic (provider errors before the first token, and no runner free)
        retried = async_runner.process_with_retry(agent, "Complex query", retry_count=3, retry_delay=2.0)
        result = (await async_runner.wait_for_tasks([retried], timeout=30))[retried]
        assert isinstance(result, raaf.RunResult)
        print(f"Result after retries: {result.messages[-1]['content']}")

        # Create streaming session: each message continues the conversation
        session = async_runner.create_streaming_session(agent)
        await session.start()
        await session.send_message("Hello", lambda chunk: print(chunk["content"] or "", end=""))
        print()
        await session.send_message("Again", lambda chunk: print(chunk["content"] or "", end=""))
        print()
        print(f"session history: {len(session.history)} messages")
        print(f"stats: completed={async_runner.stats()['completed']} failed={async_runner.stats()['failed']}")


asyncio.run(main())
