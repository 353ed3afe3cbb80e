"""@ag-ui/client's HttpAgent against the AG-UI endpoint: text, a frontend tool answered by the client, handoffs."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from raaf.testing import Match, OpenAIMock, Script, ToolCall
from tests.support.dialects_fixtures import NodeClient

LOCATE = {"name": "locate_user", "description": "Where the user is.",
          "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}


def user(text: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "role": "user", "content": text}


async def run_agent(node_client: NodeClient, gateway: str, messages: list[dict[str, Any]], **args: Any
                    ) -> dict[str, Any]:
    return await node_client("ag_ui.mjs", "run", {"url": f"{gateway}/v1/ag-ui/assistant", "threadId": "t1",
                                                  "messages": messages, **args})


async def test_run_agent_streams_the_answer_as_one_text_message(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.enqueue(Script(text="Hello from the platform, over AG-UI."))
    out = await run_agent(node_client, gateway, [user("hi")],
                          context=[{"description": "user's locale", "value": "nb-NO"}])
    assert out["events"][:3] == ["RUN_STARTED", "STEP_STARTED", "TEXT_MESSAGE_START"]
    assert out["events"][-3:] == ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    [answer] = out["newMessages"]
    assert answer["role"] == "assistant" and answer["content"] == "Hello from the platform, over AG-UI."
    assert out["raw"][0]["threadId"] == "t1"
    system = [m["content"] for m in mock.requests[0]["messages"] if m["role"] == "system"]
    assert any("user's locale: nb-NO" in text for text in system)


async def test_a_frontend_tool_call_ends_the_run_and_the_tool_message_gets_the_answer(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.add_rule(match=Match(has_tool_results=False),
                  script=Script(tool_calls=[ToolCall(name="locate_user", arguments={"precise": True})]))
    mock.add_rule(match=Match(has_tool_results=True), script=Script(text="You are in Oslo."))
    first = await run_agent(node_client, gateway, [user("where am I?")], tools=[LOCATE])
    assert "TOOL_CALL_START" in first["events"] and "TOOL_CALL_RESULT" not in first["events"]
    finished = first["raw"][-1]
    [call] = [c for m in first["messages"] if m["role"] == "assistant" for c in m.get("toolCalls", [])]
    assert call["function"] == {"name": "locate_user", "arguments": '{"precise":true}'}
    assert finished["outcome"] == {"type": "success", "pendingToolCallIds": [call["id"]]}
    answered = [*first["messages"], {"id": uuid.uuid4().hex, "role": "tool", "toolCallId": call["id"],
                                     "content": '{"city":"Oslo"}'}]
    second = await run_agent(node_client, gateway, answered, tools=[LOCATE])
    assert second["newMessages"][-1]["content"] == "You are in Oslo."
    assert mock.requests[1]["messages"][-1] == {"role": "tool", "tool_call_id": call["id"],
                                                "content": '{"city":"Oslo"}'}


async def test_a_handoff_finishes_one_step_and_starts_the_next_agents(
    mock: OpenAIMock, gateway: str, node_client: NodeClient
) -> None:
    mock.enqueue(Script(tool_calls=[ToolCall(name="transfer_to_billing")]))
    mock.enqueue(Script(text="Billing here."))
    out = await run_agent(node_client, gateway, [user("my invoice")])
    steps = [(e["type"], e["stepName"]) for e in out["raw"] if e["type"].startswith("STEP_")]
    assert steps == [("STEP_STARTED", "assistant"), ("STEP_FINISHED", "assistant"), ("STEP_STARTED", "billing"),
                     ("STEP_FINISHED", "billing")]
    assert "TOOL_CALL_RESULT" in out["events"] and out["newMessages"][-1]["content"] == "Billing here."


async def test_bad_input_gets_a_typed_error(gateway: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway}/v1/ag-ui/assistant", json={"threadId": "t", "runId": "r 1",
                                                                "messages": [user("x")]}) as resp:
        assert resp.status == 400 and "runId" in (await resp.json())["message"]
    async with http.post(f"{gateway}/v1/ag-ui/assistant", data=b"{}",
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400 and (await resp.json())["code"] == "bad_request"
    async with http.post(f"{gateway}/v1/ag-ui/nobody", json={"threadId": "t", "runId": "r2",
                                                             "messages": [user("x")]}) as resp:
        assert resp.status == 404


async def test_a_client_that_disconnects_cancels_its_run(
    mock: OpenAIMock, gateway: str, http: aiohttp.ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 300, token_delay=0.02))
    body = {"threadId": "t", "runId": uuid.uuid4().hex, "messages": [user("long")]}
    async with http.post(f"{gateway}/v1/ag-ui/assistant", json=body) as resp:
        seen = 0
        async for line in resp.content:
            seen += line.startswith(b'data: {"type":"TEXT_MESSAGE_CONTENT"')
            if seen == 3:
                break
    await mock.wait_for_disconnect(timeout=5)
    async with http.get(f"{gateway}/v1/runs/{body['runId']}/events") as events:
        kinds = [line[7:].strip() async for line in events.content if line.startswith(b"event: ")]
    assert kinds[-1] == b"run_cancelled"
