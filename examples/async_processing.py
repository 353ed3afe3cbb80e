"""Quick Start / Async Processing: runs in the background, and one message to several agents at once."""

import asyncio

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")
agent1, agent2, agent3 = (raaf.Agent(name=f"agent{i}", instructions=f"Agent {i}.") for i in (1, 2, 3))


async def main() -> None:
    # Create async runner
    async with raaf.AsyncRunner(pool_size=10, queue_size=100) as async_runner:
        # Process messages asynchronously
        task_id = async_runner.process_async(
            agent, "Hello", lambda result: print(f"Async result: {result.messages[-1]['content']}"))
        await async_runner.wait_for_tasks([task_id], timeout=30)

        # Process multiple agents concurrently (callbacks run as each completes: sort for a stable printout)
        lines: list[str] = []
        agents = [agent1, agent2, agent3]
        ids = async_runner.process_concurrent(
            agents, "Same message",
            lambda agent, result: lines.append(f"{agent.name}: {result.messages[-1]['content']}"))
        await async_runner.wait_for_tasks(ids, timeout=30)
        print("\n".join(sorted(lines)))


asyncio.run(main())
