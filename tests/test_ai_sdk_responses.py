"""The Vercel AI SDK's ``streamText`` on @ai-sdk/openai's default provider (the Responses API), unchanged."""

from __future__ import annotations

from raaf.testing import Match, OpenAIMock, Script, ToolCall
from tests.support.dialects_fixtures import NodeClient


async def test_stream_text_with_the_default_openai_provider_streams_the_agents_answer(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.enqueue(Script(text="Streamed to the AI SDK through the platform."))
    out = await node_client("ai_sdk.mjs", "streamText", {"baseURL": f"{gateway}/v1", "model": "assistant",
                                                         "prompt": "hi"})
    assert out["text"] == "Streamed to the AI SDK through the platform." and len(out["deltas"]) > 3
    assert out["finishReason"] == "stop"
    assert mock.requests[0]["messages"][-1] == {"role": "user", "content": "hi"}


async def test_a_tool_without_execute_comes_back_to_stream_text_as_a_tool_call(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="lookup_order", arguments={"number": "7"})]))
    out = await node_client("ai_sdk.mjs", "streamText", {"baseURL": f"{gateway}/v1", "model": "assistant",
                                                         "prompt": "order 7?", "withTool": True})
    assert out["toolCalls"] == [{"name": "lookup_order", "input": {"number": "7"}}]
    assert out["finishReason"] == "tool-calls"
    assert "lookup_order" in {t["function"]["name"] for t in mock.requests[0]["tools"]}
