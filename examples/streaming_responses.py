"""Core Components / 1. Streaming Responses: chunk processing, text and tool calls as they stream."""

import asyncio

import raaf

weather = raaf.Agent(name="weather", instructions="You report the weather.")
agent = raaf.Agent(name="assistant", instructions="You are helpful.", handoffs=[weather])


async def main() -> None:
    async with raaf.Runner(agent) as runner:
        # Basic streaming with chunk processing
        async for chunk in runner.run("Explain quantum computing", stream=True):
            print(chunk.content or "", end="", flush=True)
        print()

        # Advanced streaming with event handling: text and tool calls arrive as separate chunks.
        # (The demo model calls a tool when asked with [[tool:NAME {json}]]; here it hands over to `weather`.)
        response_buffer = ""
        tool_calls = []
        async for chunk in runner.run("What's the weather? [[tool:transfer_to_weather]]", stream=True):
            if chunk.tool_calls:
                tool_calls.extend(chunk.tool_calls)
                print(f"\n[Tool executing: {chunk.tool_calls[0].name}]")
            elif chunk.content:
                print(chunk.content, end="", flush=True)
                response_buffer += chunk.content
        print()
        print(f"tool calls: {[call.name for call in tool_calls]}")
        print(f"buffered: {response_buffer!r}")


asyncio.run(main())
