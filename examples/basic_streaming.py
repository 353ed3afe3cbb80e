"""Quick Start / Basic Streaming: stream an agent's answer as it is generated."""

import asyncio

import raaf


async def main() -> None:
    # Create an agent (sent along with each run; the agent-runners execute it)
    agent = raaf.Agent(
        name="StreamingAgent",
        instructions="You are a helpful assistant that provides streaming responses",
        model="gpt-4o",
    )

    # Create streaming runner (NATS_URL / RAAF_PREFIX, or raaf.configure(platform=...))
    async with raaf.Runner(agent) as runner:
        # Stream responses in real-time
        async for chunk in runner.run("Tell me about AI streaming", stream=True):
            print(chunk.content or "", end="", flush=True)
    print()


asyncio.run(main())
