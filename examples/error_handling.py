"""Error Handling / Streaming Error Handling: typed errors, raised where they happened (even another service)."""

import asyncio

import raaf

LONG_MESSAGE = " ".join(["streaming"] * 500)  # the model echoes it word by word: longer than the timeout


async def stream(runner: raaf.Runner, message: str) -> str:
    text = ""
    async for chunk in runner.run(message, stream=True):
        text += chunk.content or ""
    return text


async def fallback_to_non_streaming(runner: raaf.Runner, message: str) -> str:
    return (await runner.run(message)).output


async def main() -> None:
    # A run the agent-runner stops at its timeout: the runner's failure arrives here as raaf.TimeoutError
    async with raaf.Runner("assistant", timeout=0.2) as runner:
        try:
            await stream(runner, LONG_MESSAGE)
        except raaf.TimeoutError as e:
            print(f"Timeout error: code={e.code.value} (a builtins.TimeoutError too: {isinstance(e, TimeoutError)})")
        except raaf.StreamingError as e:
            print(f"Streaming error: {e.message}")

    # An agent no runner serves: raaf.NotFoundError, a StreamingError
    async with raaf.Runner("no_such_agent") as runner:
        try:
            await stream(runner, "Message")
        except raaf.StreamingError as e:
            print(f"Streaming error: {type(e).__name__} code={e.code.value}")
            async with raaf.Runner("assistant") as fallback:
                print(f"fallback: {await fallback_to_non_streaming(fallback, 'Message')}")

    # NATS not reachable: raaf.ConnectionError (a builtins.ConnectionError too)
    try:
        async with raaf.Runner("assistant", nats_url="nats://127.0.0.1:1") as runner:
            await stream(runner, "Message")
    except raaf.ConnectionError as e:
        print(f"Connection error: {type(e).__name__} (retry with backoff)")
    except Exception as e:
        print(f"General error: {e}")


asyncio.run(main())
