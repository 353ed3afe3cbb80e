"""Approvals through the gateway: who may decide (shared.access), over WebSocket and REST, with typed errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from proto.runs import RunCancelled
from raaf.testing import OpenAIMock
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.approvals import approvals_env, parked_state, until_parked
from tests.support.dialects_fixtures import NodeClient
from tests.support.env import service_env
from tests.support.gateway import SECRET, token
from tests.support.processes import ServiceProcess
from tests.support.restart import alive, calls, scripted_model
from tests.support.runs import Runs

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def mock() -> AsyncIterator[OpenAIMock]:
    async with OpenAIMock(token_delay=0.01, fallback=scripted_model) as server:
        yield server


@pytest.fixture
async def gateway(nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, runs: Runs,
                  service_process: Callable[..., ServiceProcess], start_app: StartApp) -> str:
    service_process("services.agent_runner", approvals_env(nats_server.url, mock.url, prefix, tmp_path, "a"))
    await alive(runs, "a")
    env = service_env(nats_server.url, "redis://127.0.0.1:1/0", RAAF_PREFIX=prefix, GATEWAY_RUN_IDLE_CHECK="0.5",
                      GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET)
    app = await start_app(GatewayApp(GatewaySettings.from_env(env)))
    return app.http_url


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


class Socket:
    """A WebSocket client of /ws as one identity; ``until`` takes the next frame of a kind, keeping the others
    it read for later calls."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.unread: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def until(self, kind: str, ref: str | None = None) -> dict[str, Any]:
        def wanted(message: dict[str, Any]) -> bool:
            return message["type"] in (kind, "error") and (ref is None or message.get("ref") == ref)

        for i, earlier in enumerate(self.unread):
            if wanted(earlier):
                return self.unread.pop(i)
        while True:
            msg = await self.ws.receive(timeout=30)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            message: dict[str, Any] = json.loads(msg.data)
            if wanted(message):
                return message
            self.unread.append(message)


async def open_socket(session: aiohttp.ClientSession, base: str, bearer: str) -> Socket:
    ws = await session.ws_connect(f"{base.replace('http', 'ws', 1)}/ws",
                                  headers={"Authorization": f"Bearer {bearer}"})
    socket = Socket(ws)
    assert (await socket.until("welcome"))["type"] == "welcome"
    return socket


async def post(session: aiohttp.ClientSession, url: str, bearer: str, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any]]:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {bearer}"}) as response:
        return response.status, await response.json()


async def test_only_the_owner_an_approver_or_a_granted_identity_may_decide_and_a_refusal_changes_nothing(
    gateway: str, session: aiohttp.ClientSession, runs: Runs, tmp_path: Path
) -> None:
    alice = await open_socket(session, gateway, token("alice"))
    await alice.send(type="agent_stream", id="s1", agent="clerk", input="charge:5000")
    run_id = (await alice.until("run_accepted", "s1"))["run_id"]
    request = await alice.until("run_approval_requested")
    assert request["approvers"] == ["alice", "auditor"] and request["name"] == "charge"
    await until_parked(runs, run_id)
    call_id = request["call_id"]
    url = f"{gateway}/v1/runs/{run_id}/approvals/{call_id}"

    bob = await open_socket(session, gateway, token("bob", approvals=["someone-else"]))
    await bob.send(type="run_decide", id="b1", run_id=run_id, call_id=call_id, approved=True)
    refused = await bob.until("decision_accepted", "b1")
    assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
    status, body = await post(session, url, token("bob"), {"approved": True})
    assert (status, body["code"]) == (403, "forbidden")
    assert await parked_state(runs, run_id) == [call_id], "a refused decision changes nothing"
    assert [e["type"] for e in await events_of(runs, run_id)][-1] == "run_approval_requested"
    assert calls(tmp_path) == []

    status, body = await post(session, url, token("carol", approvals=["cl*"]), {"approved": True,
                                                                                "arguments": {"amount": 1500}})
    assert status == 200 and body["type"] == "decision_accepted" and body["call_id"] == call_id, body
    await alice.send(type="run_decide", id="a1", run_id=run_id, call_id=call_id, approved=False, message="no")
    twice = await alice.until("decision_accepted", "a1")
    assert (twice["type"], twice["code"]) == ("error", "conflict"), twice
    decided = await alice.until("run_approval_decided")
    assert (decided["decided_by"], decided["approved"], decided["arguments"]) == ("carol", True, '{"amount":1500}')
    completed = await alice.until("run_completed")
    assert completed["output"].startswith("Done (charged 1500)")
    assert calls(tmp_path) == ["charge 1500"]


async def test_the_owner_rejects_over_the_websocket_and_the_model_answers_the_rejection(
    gateway: str, session: aiohttp.ClientSession, runs: Runs, tmp_path: Path
) -> None:
    alice = await open_socket(session, gateway, token("alice"))
    await alice.send(type="agent_stream", id="s1", agent="clerk", input="charge:2500")
    run_id = (await alice.until("run_accepted", "s1"))["run_id"]
    request = await alice.until("run_approval_requested")
    await alice.send(type="run_decide", id="d1", run_id=run_id, call_id=request["call_id"], approved=False,
                     message="Not today.")
    accepted = await alice.until("decision_accepted", "d1")
    assert accepted["type"] == "decision_accepted" and accepted["seq"] == request["seq"] + 1, accepted
    output = await alice.until("run_tool_output")
    assert (output["output"], output["is_error"]) == ("Not today.", True)
    assert (await alice.until("run_completed"))["output"].startswith("Done (Not today.)")
    status, body = await post(session, f"{gateway}/v1/runs/{run_id}/approvals/nope", token("alice"),
                              {"approved": True})
    assert (status, body["code"]) == (404, "not_found")
    assert calls(tmp_path) == []


async def events_of(runs: Runs, run_id: str) -> list[dict[str, Any]]:
    """The run's stored events so far (it may not have ended)."""
    return [json.loads(raw) async for _, raw in runs.client.log.stored(run_id)]


async def test_the_ai_sdk_chat_transport_gets_a_tool_approval_request_and_its_approval_response_continues_the_run(
    gateway: str, node_client: NodeClient, tmp_path: Path
) -> None:
    question = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "charge:6000"}]}
    out = await node_client("ai_sdk.mjs", "approve", {
        "api": f"{gateway}/v1/ui/clerk/chat", "chatId": uuid.uuid4().hex[:16], "messages": [question],
        "headers": {"Authorization": f"Bearer {token('alice')}"}, "approved": True})
    asked = out["asked"]
    request = next(c for c in asked if c["type"] == "tool-approval-request")
    assert request == {"type": "tool-approval-request", "approvalId": "call_1_charge", "toolCallId": "call_1_charge"}
    assert asked[-1] == {"type": "finish", "finishReason": "tool-calls"}, "the stream ends while the run waits"
    (waiting,) = [p for p in out["askedMessage"]["parts"] if p.get("state") == "approval-requested"]
    assert (waiting["toolCallId"], waiting["approval"]) == ("call_1_charge", {"id": "call_1_charge"})
    assert out["ready"] is True, "the SDK's own check says the answer is to be sent"
    rest = out["rest"]
    assert rest[0]["type"] == "start" and rest[0]["messageId"] == out["askedMessage"]["id"]
    assert {"type": "tool-approval-response", "approvalId": "call_1_charge", "approved": True} in rest
    assert not any(c["type"] == "tool-approval-request" for c in rest), "the continuation only"
    assert rest[-1] == {"type": "finish", "finishReason": "stop"}
    (tool,) = [p for p in out["message"]["parts"] if p.get("toolCallId") == "call_1_charge"]
    assert (tool["state"], tool["output"]) == ("output-available", "charged 6000")
    text = "".join(p["text"] for p in out["message"]["parts"] if p["type"] == "text")
    assert "Done (charged 6000)" in text
    assert calls(tmp_path) == ["charge 6000"]


async def test_an_ai_sdk_denial_with_a_reason_reaches_the_model_as_the_tool_output(
    gateway: str, node_client: NodeClient, tmp_path: Path
) -> None:
    question = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "charge:7000"}]}
    out = await node_client("ai_sdk.mjs", "approve", {
        "api": f"{gateway}/v1/ui/clerk/chat", "chatId": uuid.uuid4().hex[:16], "messages": [question],
        "headers": {"Authorization": f"Bearer {token('alice')}"}, "approved": False, "reason": "Not now."})
    assert {"type": "tool-approval-response", "approvalId": "call_1_charge", "approved": False,
            "reason": "Not now."} in out["rest"]
    (tool,) = [p for p in out["message"]["parts"] if p.get("toolCallId") == "call_1_charge"]
    assert (tool["state"], tool["output"]) == ("output-available", "Not now.")
    assert "Done (Not now.)" in "".join(p["text"] for p in out["message"]["parts"] if p["type"] == "text")
    assert calls(tmp_path) == []


async def ag_ui_interrupt(node_client: NodeClient, gateway: str, text: str, **args: Any) -> dict[str, Any]:
    """@ag-ui/client's HttpAgent as alice: a run that ends with an interrupt, then its resume (``args``)."""
    return await node_client("ag_ui.mjs", "interrupt", {
        "url": f"{gateway}/v1/ag-ui/clerk", "threadId": uuid.uuid4().hex[:12],
        "messages": [{"id": "u1", "role": "user", "content": text}],
        "headers": {"Authorization": f"Bearer {token('alice')}"}, **args})


async def test_ag_ui_ends_the_run_with_an_interrupt_and_the_clients_resume_approves_with_edited_arguments(
    gateway: str, node_client: NodeClient, runs: Runs, tmp_path: Path
) -> None:
    out = await ag_ui_interrupt(node_client, gateway, "charge:6000",
                                payload={"approved": True, "editedArgs": {"amount": 1200}})
    assert out["resumeError"] is None, out["resumeError"]
    first, second = out["first"], out["second"]
    run_id = first[0]["runId"]
    finished = first[-1]
    assert finished["type"] == "RUN_FINISHED" and finished["outcome"]["type"] == "interrupt", finished
    (interrupt,) = finished["outcome"]["interrupts"]
    assert out["interrupts"] == [interrupt], "the client holds the interrupt as pending"
    assert (interrupt["id"], interrupt["reason"], interrupt["toolCallId"]) == (
        f"{run_id}:call_1_charge", "tool_approval", "call_1_charge")
    assert interrupt["metadata"]["tool"] == "charge" and interrupt["metadata"]["arguments"] == \
        '{"amount":6000,"seconds":0}' and "expiresAt" in interrupt
    assert [e["type"] for e in first][-2:] == ["STEP_FINISHED", "RUN_FINISHED"]

    assert second[0]["type"] == "RUN_STARTED" and second[0]["runId"] != run_id, "a resume is a new AG-UI run"
    decided = next(e for e in second if e["type"] == "CUSTOM")
    assert decided["name"] == "raaf.approval_decided" and decided["value"]["decidedBy"] == "alice"
    (result,) = [e for e in second if e["type"] == "TOOL_CALL_RESULT"]
    assert (result["toolCallId"], result["content"]) == ("call_1_charge", "charged 1200")
    assert second[-1]["type"] == "RUN_FINISHED" and second[-1]["outcome"]["type"] == "success"
    assert second[-1]["runId"] == second[0]["runId"] and out["pendingAfter"] == []
    answer = [m for m in out["messages"] if m["role"] == "assistant" and m.get("content")][-1]
    assert "Done (charged 1200)" in answer["content"]

    stored = await events_of(runs, run_id)
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1)), "one run, gap-free"
    (asked,) = [e for e in stored if e["type"] == "run_approval_requested"]
    (took,) = [e for e in stored if e["type"] == "run_approval_decided"]
    assert took["seq"] == asked["seq"] + 1 and took["arguments"] == '{"amount":1200}'
    assert stored[-1]["type"] == "run_completed" and calls(tmp_path) == ["charge 1200"]


async def test_an_ag_ui_resume_without_the_grant_is_forbidden_and_the_owner_can_then_cancel_the_parked_run(
    gateway: str, node_client: NodeClient, session: aiohttp.ClientSession, runs: Runs, tmp_path: Path
) -> None:
    out = await ag_ui_interrupt(node_client, gateway, "charge:8000", payload=True,
                                resumeHeaders={"Authorization": f"Bearer {token('bob')}"})
    run_id = out["first"][0]["runId"]
    assert out["resumeError"] is not None and out["resumeError"]["status"] in (403, 404), out["resumeError"]
    assert out["second"] == []
    assert await parked_state(runs, run_id) == ["call_1_charge"], "a refused resume changes nothing"
    assert [e["type"] for e in await events_of(runs, run_id)][-1] == "run_approval_requested"

    async with session.post(f"{gateway}/v1/runs/{run_id}/cancel",
                            headers={"Authorization": f"Bearer {token('alice')}"}) as response:
        assert response.status == 202, await response.text()
    ended = await runs.events(run_id)
    assert isinstance(ended[-1], RunCancelled) and [e.seq for e in ended] == list(range(1, len(ended) + 1))
    assert await parked_state(runs, run_id) is None and calls(tmp_path) == []


async def test_a_cancelled_ag_ui_resume_is_a_rejection_the_model_answers(
    gateway: str, node_client: NodeClient, tmp_path: Path
) -> None:
    out = await ag_ui_interrupt(node_client, gateway, "charge:9000", cancel=True)
    assert out["resumeError"] is None, out["resumeError"]
    (result,) = [e for e in out["second"] if e["type"] == "TOOL_CALL_RESULT"]
    assert "dismissed" in result["content"] and out["second"][-1]["outcome"]["type"] == "success"
    assert calls(tmp_path) == []


async def test_the_openai_client_gets_an_mcp_approval_request_and_its_approval_response_continues_the_response(
    gateway: str, runs: Runs, tmp_path: Path
) -> None:
    api = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token("alice"))
    first = [e async for e in await api.responses.create(model="clerk", input="charge:6000", stream=True)]
    assert first[-1].type == "response.completed", [e.type for e in first]
    done = first[-1].response
    (asked,) = [item for item in done.output if item.type == "mcp_approval_request"]
    assert (asked.id, asked.name, asked.server_label) == ("mcpr_call_1_charge", "charge", "clerk")
    assert asked.arguments == '{"amount":6000,"seconds":0}' and done.status == "completed"
    numbers = [e.sequence_number for e in first]
    assert numbers[:-1] == list(range(len(first) - 1)) and numbers[-1] == numbers[-2], "the pause takes no number"

    second = [e async for e in await api.responses.create(
        model="clerk", previous_response_id=done.id, stream=True,
        input=[{"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}])]
    assert second[0].type == "response.in_progress" and second[0].sequence_number == numbers[-1] + 1
    assert second[-1].type == "response.completed" and second[-1].response.id == done.id, "the same response"
    assert "Done (charged 6000)" in second[-1].response.output_text
    whole = [e async for e in await api.responses.retrieve(done.id, stream=True)]
    assert [e.sequence_number for e in whole] == numbers[:-1] + [e.sequence_number for e in second]
    run_id = done.id.removeprefix("resp_")
    stored = await events_of(runs, run_id)
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1)) and stored[-1]["type"] == "run_completed"
    assert calls(tmp_path) == ["charge 6000"]


async def test_a_responses_rejection_reaches_the_model_and_a_caller_without_the_grant_changes_nothing(
    gateway: str, runs: Runs, tmp_path: Path
) -> None:
    alice = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token("alice"))
    bob = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token("bob"))
    done = await alice.responses.create(model="clerk", input="charge:4000")
    (asked,) = [item for item in done.output if item.type == "mcp_approval_request"]
    answer = [{"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": False,
               "reason": "Too much."}]
    with pytest.raises(openai.APIStatusError) as refused:
        await bob.responses.create(model="clerk", previous_response_id=done.id, input=answer)  # type: ignore[arg-type]
    assert refused.value.status_code in (403, 404)
    assert await parked_state(runs, done.id.removeprefix("resp_")) == ["call_1_charge"]
    went_on = await alice.responses.create(model="clerk", previous_response_id=done.id, input=answer)  # type: ignore[arg-type]
    assert went_on.id == done.id and went_on.status == "completed"
    assert "Done (Too much.)" in went_on.output_text and calls(tmp_path) == []
