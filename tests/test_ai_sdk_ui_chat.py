"""The AI SDK's chat transport (what useChat uses) against the UI message stream endpoint: resume, stop, tools."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from raaf.testing import Match, OpenAIMock, Script, ToolCall
from tests.support.dialects_fixtures import NodeClient

ANSWER = "A chat answer that streams in many small pieces to the browser."


def user(text: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex[:12], "role": "user", "parts": [{"type": "text", "text": text}]}


def text_of(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


async def chat(node_client: NodeClient, gateway: str, **args: Any) -> dict[str, Any]:
    return await node_client("ai_sdk.mjs", "chat", {"api": f"{gateway}/v1/ui/assistant/chat",
                                                    "chatId": uuid.uuid4().hex[:16], **args})


async def test_the_chat_transport_reads_a_ui_message_stream_of_the_agents_answer(
    mock: OpenAIMock, gateway: str, node_client: NodeClient, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text=ANSWER))
    out = await chat(node_client, gateway, messages=[user("hi")])
    kinds = [chunk["type"] for chunk in out["before"]]
    assert kinds[:3] == ["start", "start-step", "text-start"] and kinds[-3:] == ["text-end", "finish-step", "finish"]
    assert text_of(out["message"]) == ANSWER and out["message"]["role"] == "assistant"
    assert out["afterEnd"] is None  # nothing streaming any more: the resume GET answered 204
    async with http.post(f"{gateway}/v1/ui/assistant/chat", json={"id": "c1", "messages": [user("x")]}) as resp:
        assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert (await resp.read()).endswith(b"data: [DONE]\n\n")


async def test_a_dropped_chat_stream_resumes_with_the_identical_transcript(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.enqueue(Script(text=ANSWER, token_delay=0.02))
    out = await chat(node_client, gateway, messages=[user("hi")], dropAfter=5)
    resumed = out["resumed"]
    assert out["before"] == resumed[:5]  # the resume replays the message from its first part, chunk for chunk
    assert resumed[-1] == {"type": "finish", "finishReason": "stop"}
    assert "".join(c["delta"] for c in resumed if c["type"] == "text-delta") == ANSWER
    assert text_of(out["message"]) == ANSWER
    assert out["afterEnd"] is None


async def test_stop_cancels_the_run_and_the_stream_ends_with_abort(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 400, token_delay=0.02))
    chat_id = uuid.uuid4().hex[:16]
    async with http.post(f"{gateway}/v1/ui/assistant/chat", json={"id": chat_id, "messages": [user("long")]}) as resp:
        lines = []
        async for line in resp.content:
            lines.append(line)
            if len(lines) == 10:
                async with http.post(f"{gateway}/v1/ui/assistant/chat/{chat_id}/stop") as stopped:
                    assert stopped.status == 202
        body = b"".join(lines)
    assert b'"type":"abort"' in body and body.endswith(b"data: [DONE]\n\n")
    await mock.wait_for_disconnect(timeout=5)
    async with http.get(f"{gateway}/v1/ui/assistant/chat/{chat_id}/stream") as resp:
        assert resp.status == 204


async def test_a_client_tool_call_comes_back_and_the_message_with_its_output_continues(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="locate_user", arguments={"precise": True})]))
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="You are in Oslo."))
    tools = [{"name": "locate_user", "description": "Where the user is.",
              "inputSchema": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}]
    chat_id = uuid.uuid4().hex[:16]
    question = user("where am I?")
    first = await chat(node_client, gateway, chatId=chat_id, messages=[question], body={"tools": tools})
    message = first["message"]
    [part] = [p for p in message["parts"] if p["type"] == "tool-locate_user"]
    assert part["state"] == "input-available" and part["input"] == {"precise": True}
    assert first["chunks"][-1] == {"type": "finish", "finishReason": "tool-calls"}
    part.update(state="output-available", output={"city": "Oslo"})  # what addToolOutput does
    second = await chat(node_client, gateway, chatId=chat_id, messages=[question, message], body={"tools": tools})
    assert second["chunks"][0] == {"type": "start", "messageId": message["id"]}
    assert text_of(second["message"]) == "You are in Oslo."
    assert mock.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": part["toolCallId"],
                                                "content": '{"city":"Oslo"}'}


async def test_server_tools_show_as_dynamic_tool_parts_with_their_output(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.enqueue(Script(tool_calls=[ToolCall(name="add", arguments={"a": 2, "b": 3})]))
    mock.enqueue(Script(text="It is 5."))
    out = await chat(node_client, gateway, messages=[user("2+3?")])
    [tool] = [p for p in out["message"]["parts"] if p["type"] == "dynamic-tool"]
    assert (tool["toolName"], tool["state"], tool["output"]) == ("add", "output-available", 5)
    assert text_of(out["message"]) == "It is 5."
    assert [chunk["type"] for chunk in out["before"]].count("start-step") == 2


async def test_bad_chat_requests_get_typed_errors(gateway: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway}/v1/ui/assistant/chat", data=b"[",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
    async with http.post(f"{gateway}/v1/ui/assistant/chat", json={"id": "bad id", "messages": [user("x")]}) as resp:
        assert resp.status == 400
    async with http.post(f"{gateway}/v1/ui/nobody/chat", json={"id": "c2", "messages": [user("x")]}) as resp:
        assert resp.status == 404
    async with http.get(f"{gateway}/v1/ui/assistant/chat/never-used/stream") as resp:
        assert resp.status == 204
