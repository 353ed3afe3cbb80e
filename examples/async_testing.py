"""Testing / Async Testing: three background runs on a small pool, waited for (script or pytest)."""

import asyncio

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")


async def test_async_processing() -> list[str]:
    # Test async processing
    async with raaf.AsyncRunner(pool_size=2, queue_size=10) as async_runner:
        results: list[raaf.RunResult] = []
        completed = asyncio.Semaphore(0)  # the seed's CountDownLatch

        def done(result: raaf.RunResult) -> None:
            results.append(result)
            completed.release()

        for i in range(3):
            async_runner.process_async(agent, f"Message {i}", done)

        async with asyncio.timeout(5):  # Wait up to 5 seconds
            for _ in range(3):
                await completed.acquire()
    assert len(results) == 3
    return sorted(result.output for result in results)


if __name__ == "__main__":
    print(asyncio.run(test_async_processing()))
