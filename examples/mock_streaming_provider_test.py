"""Testing / Mock Streaming Provider: test an agent's streaming with no API key (run with pytest).

Needs NATS (NATS_URL; `make run` has one): the agent-runner runs in the test process, answering from the mock.
"""

import raaf
from raaf.testing import MockProvider, StreamingProvider


async def test_streaming_with_a_mock_provider() -> None:
    # Mock provider for testing
    mock_provider = MockProvider()
    mock_provider.add_response("Streaming works in tests.")
    streaming_provider = StreamingProvider(provider=mock_provider, enable_simulation=True, simulation_delay=0.01)

    # Test streaming functionality
    agent = raaf.Agent(name="TestAgent", instructions="You are tested.")
    async with streaming_provider, streaming_provider.runner(agent) as runner:
        chunks = [chunk async for chunk in runner.run("Test message", stream=True)]

    assert chunks
    assert all(hasattr(chunk, "content") for chunk in chunks)
    assert "".join(chunk.content or "" for chunk in chunks) == "Streaming works in tests."
