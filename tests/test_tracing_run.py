"""One run is one trace: gateway, runner, model turns, tool, handoff; jobs and chat answers link to what began them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import nats
import pytest
from nats.js.errors import NotFoundError

from proto.subjects import Subjects
from raaf.testing import Match, OpenAIMock, Script, ToolCall
from shared.clients.jobs import JobsClient
from shared.clients.runs import RunClient
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.jobs.errors import SchedulerUnavailableError
from shared.tracing import TRACING
from tests.support.env import service_env, unique_prefix
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import ServiceProcess
from tests.support.runs import Runs, StartRunner

AGENTS_TOML = """
[[agents]]
name = "triage"
model = "triage-m"
tools = ["schedule_followup"]
handoffs = ["billing"]

[[agents]]
name = "billing"
model = "billing-m"

[[agents]]
name = "followup"
model = "followup-m"
"""
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds
TOOLS = "tests.support.tracing_tools"


@dataclass
class Stack:
    gateway: str
    receiver: OtlpReceiver
    mock: OpenAIMock
    nats_url: str
    prefix: str
    chat: ServiceProcess
    chat_url: str


@pytest.fixture
async def stack(nats_server: NatsServer, redis_server: ValkeyServer, receiver: OtlpReceiver, tmp_path: Path,
                service_process: Callable[..., ServiceProcess]) -> AsyncIterator[Stack]:
    """Gateway, agent-runner and scheduler as processes, each exporting its spans to ``receiver``."""
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS_TOML)
    async with OpenAIMock() as mock:
        common = dict(RAAF_PREFIX=unique_prefix("tr"), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                      OTEL_TRACES_SAMPLER="always_on", OTEL_BSP_SCHEDULE_DELAY="50", LOG_LEVEL="info")
        ports = {name: free_port() for name in ("gateway", "runner", "scheduler", "chat")}
        processes = [
            (service_process("services.agent_runner", service_env(
                nats_server.url, redis_server.url, HTTP_PORT=str(ports["runner"]), OPENAI_BASE_URL=mock.url,
                RAAF_AGENTS_FILE=str(agents), RAAF_TOOLS_MODULE=TOOLS, **common)), ports["runner"]),
            (service_process("services.scheduler", service_env(
                nats_server.url, redis_server.url, HTTP_PORT=str(ports["scheduler"]), **common)), ports["scheduler"]),
            (service_process("services.chat", service_env(
                nats_server.url, redis_server.url, HTTP_PORT=str(ports["chat"]), **common)), ports["chat"]),
            (service_process("services.gateway", service_env(
                nats_server.url, redis_server.url, WEBSOCKET_PORT=str(ports["gateway"]), **common)), ports["gateway"]),
        ]
        for process, port in processes:  # four processes importing the SDK at once: slow on a loaded machine
            await process.wait_ready(f"http://127.0.0.1:{port}", timeout=90)
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        await serving(gateway, nats_server.url, common["RAAF_PREFIX"])
        yield Stack(gateway, receiver, mock, nats_server.url, common["RAAF_PREFIX"], processes[2][0],
                    f"http://127.0.0.1:{ports['chat']}")


async def serving(gateway: str, nats_url: str, prefix: str) -> None:
    """Until runs reach a runner through the gateway and the scheduler answers (ready != subscribed yet)."""
    nc = await nats.connect(nats_url)
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"{gateway}/v1/agents") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
            while True:
                try:
                    await JobsClient(nc, prefix=prefix).stats()
                    break
                except SchedulerUnavailableError:
                    await asyncio.sleep(0.05)
    finally:
        await nc.close()


def script_the_conversation(mock: OpenAIMock) -> None:
    """triage calls the tool, then hands off to billing, which answers; the follow-up job's run answers too."""
    mock.add_rule(Script(tool_calls=[ToolCall(name="schedule_followup", arguments={"note": "call back"})]),
                  match=Match(model="triage-m", has_tool_results=False))
    mock.add_rule(Script(tool_calls=[ToolCall(name="transfer_to_billing", arguments={})]),
                  match=Match(model="triage-m", has_tool_results=True))
    mock.add_rule(Script(text="Billing here: your refund is on its way."), match=Match(model="billing-m"))
    mock.add_rule(Script(text="Followed up."), match=Match(model="followup-m"))


async def stream_over_websocket(gateway: str, **message: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{gateway.replace('http', 'ws', 1)}/ws") as ws:
        await ws.send_str(json.dumps({"type": "agent_stream", **message}))
        frames: list[dict[str, object]] = []
        while not frames or frames[-1]["type"] not in ("run_completed", "run_failed", "error"):
            frame = json.loads((await ws.receive(timeout=20)).data)
            if frame["type"] != "welcome":
                frames.append(frame)
        return frames


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = named(spans, name)
    return span


async def test_a_websocket_run_with_a_tool_and_a_handoff_is_one_trace_across_the_services(stack: Stack) -> None:
    script_the_conversation(stack.mock)
    frames = await stream_over_websocket(stack.gateway, agent="triage", input="I want a refund", id="q1")
    assert frames[-1]["type"] == "run_completed", frames[-1]
    receiver = stack.receiver
    expected = ("agent_stream", "invoke_agent triage", "chat billing-m", "handoff billing", "jobs enqueue_job")
    await receiver.wait_for(lambda spans: all(len(named(spans, name)) == 1 for name in expected))
    request = one(receiver.spans, "agent_stream")
    trace = [span for span in receiver.spans if span.trace_id == request.trace_id]
    run = one(trace, "invoke_agent triage")
    assert (request.service, request.kind, request.parent_id) == ("raaf-gateway", SERVER, "")
    assert (run.service, run.parent_id) == ("raaf-agent-runner", request.span_id)  # across the NATS request
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["raaf.run.id"] == frames[0]["run_id"]
    assert run.attributes["raaf.run.outcome"] == "completed"

    turns = named(trace, "chat triage-m") + named(trace, "chat billing-m")
    assert [t.attributes["raaf.turn"] for t in turns] == [1, 2, 3]
    for turn in turns:
        assert (turn.service, turn.kind, turn.parent_id) == ("raaf-agent-runner", CLIENT, run.span_id)
        assert turn.attributes["gen_ai.operation.name"] == "chat"
        assert turn.attributes["gen_ai.request.model"] in ("triage-m", "billing-m")
        assert turn.attributes["gen_ai.usage.input_tokens"] > 0
        assert turn.attributes["gen_ai.usage.output_tokens"] > 0
        assert turn.events["gen_ai.first_token"]["gen_ai.response.time_to_first_token"] > 0
    assert [t.attributes["gen_ai.agent.name"] for t in turns] == ["triage", "triage", "billing"]
    assert run.attributes["gen_ai.usage.output_tokens"] == sum(t.attributes["gen_ai.usage.output_tokens"]
                                                               for t in turns)

    tool = one(trace, "execute_tool schedule_followup")
    handoff = one(trace, "handoff billing")
    assert tool.parent_id == handoff.parent_id == run.span_id
    assert tool.attributes["gen_ai.tool.name"] == "schedule_followup"
    assert (handoff.attributes["raaf.handoff.from_agent"], handoff.attributes["raaf.handoff.to_agent"]) == (
        "triage", "billing")

    # The tool enqueued a job: the scheduler's span is in the run's trace, under the tool's span ...
    enqueue = one(trace, "jobs enqueue_job")
    assert (enqueue.service, enqueue.parent_id) == ("raaf-scheduler", tool.span_id)
    # ... and the job, in a trace of its own, links to it; the run it starts is a child of the job's span.
    await receiver.wait_for(lambda spans: len(named(spans, "invoke_agent followup")) == 1
                            and len(named(spans, "process run_agent")) == 1)
    job = one(receiver.spans, "process run_agent")
    assert job.kind == CONSUMER and job.trace_id != request.trace_id and job.parent_id == ""
    assert job.links == [(enqueue.trace_id, enqueue.span_id)]
    followup = one(receiver.spans, "invoke_agent followup")
    assert (followup.trace_id, followup.parent_id) == (job.trace_id, job.span_id)


async def test_chat_completions_continue_the_callers_trace_into_the_runner(stack: Stack) -> None:
    stack.mock.add_rule(Script(text="Hello from billing."), match=Match(model="billing-m"))
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{stack.gateway}/v1/chat/completions",
                                      json={"model": "billing", "messages": [{"role": "user", "content": "hi"}]},
                                      headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "Hello from billing."
    await stack.receiver.wait_for(lambda spans: len(named(spans, "invoke_agent billing")) == 1
                                  and len(named(spans, "POST /v1/chat/completions")) == 1)
    request = one(stack.receiver.spans, "POST /v1/chat/completions")
    run = one(stack.receiver.spans, "invoke_agent billing")
    assert (request.trace_id, request.parent_id) == (caller_trace, caller_span)
    assert request.attributes["http.response.status_code"] == 200
    assert (run.trace_id, run.parent_id) == (caller_trace, request.span_id)


async def test_a_chat_messages_answer_links_to_the_message_and_its_run_is_in_the_answers_trace(stack: Stack) -> None:
    stack.mock.add_rule(Script(text="Billing answers the room."), match=Match(model="billing-m"))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{stack.gateway.replace('http', 'ws', 1)}/ws"
                                                                      ) as ws:
        async def until(kind: str) -> dict[str, object]:
            while True:
                frame: dict[str, object] = json.loads((await ws.receive(timeout=20)).data)
                if frame["type"] == kind or frame["type"] == "error":
                    return frame

        for message in ({"type": "chat_create_room", "room": "support", "agent": "billing"},
                        {"type": "chat_join", "room": "support"}):
            await ws.send_str(json.dumps(message))
            assert (await until("chat_joined" if message["type"] == "chat_join" else "chat_room"))["type"] != "error"
        await ws.send_str(json.dumps({"type": "chat_send", "room": "support", "text": "where is my refund?"}))
        sent = await until("chat_sent")
        assert sent["type"] == "chat_sent", sent
        while True:
            event = await until("chat_event")
            body = event["event"]
            assert isinstance(body, dict)
            if body["type"] == "agent_message":
                assert body["text"] == "Billing answers the room."
                break
    await stack.receiver.wait_for(lambda spans: len(named(spans, "chat answer")) == 1
                                  and len(named(spans, "invoke_agent billing")) == 1)
    spans = stack.receiver.spans
    request = one(spans, "chat_send")
    post = one(spans, "chat post_message")
    answer = one(spans, "chat answer")
    run = one(spans, "invoke_agent billing")
    assert (post.service, post.trace_id, post.parent_id) == ("raaf-chat", request.trace_id, request.span_id)
    assert answer.attributes["raaf.chat.message_id"] == sent["message_id"]
    assert answer.trace_id != request.trace_id and answer.links == [(post.trace_id, post.span_id)]
    assert (run.trace_id, run.parent_id) == (answer.trace_id, answer.span_id)


async def test_an_answer_resumed_by_a_restarted_chat_still_links_to_the_message_it_answers(stack: Stack) -> None:
    stack.mock.add_rule(Script(text="This answer outlives the chat replica that started it.", token_delay=0.2),
                        match=Match(model="billing-m"))
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{stack.gateway.replace('http', 'ws', 1)}/ws"
                                                                      ) as ws:
        async def until(kind: str, event: str | None = None) -> dict[str, object]:
            while True:
                frame: dict[str, object] = json.loads((await ws.receive(timeout=30)).data)
                if frame["type"] == "error":
                    return frame
                body = frame.get("event")
                of_the_kind = event is None or (isinstance(body, dict) and body["type"] == event)
                if frame["type"] == kind and of_the_kind:
                    return frame

        for message, reply in (({"type": "chat_create_room", "room": "resumed", "agent": "billing"}, "chat_room"),
                               ({"type": "chat_join", "room": "resumed"}, "chat_joined"),
                               ({"type": "chat_send", "room": "resumed", "text": "still there?"}, "chat_sent")):
            await ws.send_str(json.dumps(message))
            answered = await until(reply)
            assert answered["type"] == reply, answered
        sent = answered
        await until("chat_event", "answer_delta")  # the answer is being relayed by the chat replica ...
        stack.chat.kill()  # ... which dies (SIGKILL: its answer span is never ended, never exported)
        stack.chat.start()
        await stack.chat.wait_ready(stack.chat_url)
        final = await until("chat_event", "agent_message")  # relayed to the end by the restarted replica
    body = final["event"]
    assert isinstance(body, dict) and body["text"] == "This answer outlives the chat replica that started it."
    await stack.receiver.wait_for(lambda spans: len(named(spans, "chat answer")) == 1
                                  and len(named(spans, "chat post_message")) == 1)
    post, answer = one(stack.receiver.spans, "chat post_message"), one(stack.receiver.spans, "chat answer")
    assert answer.attributes["raaf.chat.message_id"] == sent["message_id"]
    assert answer.links == [(post.trace_id, post.span_id)]  # read from the stored message by the new replica


async def test_a_cancel_and_a_resume_each_have_a_span_that_joins_the_runs_trace(stack: Stack) -> None:
    stack.mock.add_rule(Script(text="one two three four five six seven eight nine ten", token_delay=0.3),
                        match=Match(model="billing-m"))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{stack.gateway.replace('http', 'ws', 1)}/ws") as ws:
            await ws.send_str(json.dumps({"type": "agent_stream", "agent": "billing", "input": "count", "id": "c1"}))
            run_id = ""
            while (frame := json.loads((await ws.receive(timeout=20)).data))["type"] != "run_text_delta":
                run_id = frame.get("run_id", "")
            await ws.send_str(json.dumps({"type": "cancel", "run_id": run_id, "reason": "enough"}))
            while (frame := json.loads((await ws.receive(timeout=20)).data))["type"] != "run_cancelled":
                assert frame["type"] != "error", frame
        async with session.ws_connect(f"{stack.gateway.replace('http', 'ws', 1)}/ws") as ws:
            await ws.send_str(json.dumps({"type": "resume", "run_id": run_id, "last_seq": 1}))
            replayed: list[dict[str, object]] = []
            while not replayed or replayed[-1]["type"] != "run_cancelled":
                frame = json.loads((await ws.receive(timeout=20)).data)
                assert frame["type"] != "error", frame
                if "seq" in frame:
                    replayed.append(frame)
    assert replayed[0]["seq"] == 2
    await stack.receiver.wait_for(lambda spans: len(named(spans, "cancel_run")) == 2
                                  and len(named(spans, "resume_run")) == 1
                                  and len(named(spans, "invoke_agent billing")) == 1)
    spans = stack.receiver.spans
    run = one(spans, "invoke_agent billing")
    assert run.attributes["raaf.run.outcome"] == "cancelled"
    [asked] = [span for span in named(spans, "cancel_run") if span.service == "raaf-gateway"]
    [done] = [span for span in named(spans, "cancel_run") if span.service == "raaf-agent-runner"]
    assert (asked.kind, done.kind) == (SERVER, SERVER)
    assert (done.trace_id, done.parent_id) == (asked.trace_id, asked.span_id)  # across the NATS request
    assert done.links == [(run.trace_id, run.span_id)] and done.attributes["raaf.run.id"] == run_id
    resume = one(spans, "resume_run")
    assert (resume.service, resume.kind, resume.parent_id) == ("raaf-gateway", SERVER, "")
    assert resume.links == [(run.trace_id, run.span_id)]  # from the run's stored events
    assert (resume.attributes["raaf.run.id"], resume.attributes["raaf.run.after_seq"]) == (run_id, 1)
    assert resume.attributes["raaf.resume.via"] == "websocket"


async def test_an_sse_resume_after_last_event_id_has_a_resume_span_linked_to_the_run(stack: Stack) -> None:
    stack.mock.add_rule(Script(text="Resumed over SSE."), match=Match(model="billing-m"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{stack.gateway}/v1/runs", json={"agent": "billing", "input": "hi"})
        run_id = (await response.json())["run_id"]
        await wait_for_the_end(stack.nats_url, stack.prefix, run_id)
        async with session.get(f"{stack.gateway}/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1"}) as sse:
            body = await sse.text()
    assert "event: run_completed" in body and "id: 1\n" not in body
    await stack.receiver.wait_for(lambda spans: len(named(spans, "resume_run")) == 1
                                  and len(named(spans, "invoke_agent billing")) == 1)
    run, resume = one(stack.receiver.spans, "invoke_agent billing"), one(stack.receiver.spans, "resume_run")
    assert (resume.service, resume.kind, resume.parent_id) == ("raaf-gateway", SERVER, "")
    assert resume.links == [(run.trace_id, run.span_id)]
    assert (resume.attributes["raaf.run.after_seq"], resume.attributes["raaf.resume.via"]) == (1, "sse")


async def test_a_channel_message_is_delivered_in_a_span_that_is_the_publishers_child_across_nats(
    stack: Stack
) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{stack.gateway.replace('http', 'ws', 1)}/ws"
                                                                      ) as ws:
        async def reply(kind: str) -> dict[str, object]:
            while True:
                frame: dict[str, object] = json.loads((await ws.receive(timeout=20)).data)
                if frame["type"] == kind:
                    return frame
                assert frame["type"] != "error", frame

        await ws.send_str(json.dumps({"type": "subscribe", "channel": "traced-news", "id": "s1"}))
        await reply("ack")
        await ws.send_str(json.dumps({"type": "publish", "channel": "traced-news", "data": {"n": 1}, "id": "p1"}))
        assert (await reply("message"))["data"] == {"n": 1}
    await stack.receiver.wait_for(lambda spans: len(named(spans, "channel deliver")) == 1)
    publish, deliver = one(stack.receiver.spans, "channel publish"), one(stack.receiver.spans, "channel deliver")
    assert (publish.kind, deliver.kind) == (PRODUCER, CONSUMER)
    assert (deliver.trace_id, deliver.parent_id) == (publish.trace_id, publish.span_id)
    assert publish.attributes["messaging.destination.name"] == deliver.attributes["messaging.destination.name"] == (
        "traced-news")
    assert deliver.attributes["raaf.channel.recipients"] == 1


async def test_post_v1_runs_is_the_runs_parent_and_every_stored_event_carries_the_runs_context(
    stack: Stack
) -> None:
    stack.mock.add_rule(Script(text="Posted."), match=Match(model="billing-m"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{stack.gateway}/v1/runs", json={"agent": "billing", "input": "hi"})
        assert response.status == 202, await response.text()
        run_id = (await response.json())["run_id"]
    await stack.receiver.wait_for(lambda spans: len(named(spans, "invoke_agent billing")) == 1
                                  and len(named(spans, "POST /v1/runs")) == 1)
    request, run = one(stack.receiver.spans, "POST /v1/runs"), one(stack.receiver.spans, "invoke_agent billing")
    assert (run.trace_id, run.parent_id) == (request.trace_id, request.span_id)
    assert request.attributes["http.response.status_code"] == 202
    await wait_for_the_end(stack.nats_url, stack.prefix, run_id)
    stored = await stored_headers(stack.nats_url, stack.prefix, run_id)
    assert len(stored) >= 3  # run_started, the text, run_completed
    assert [headers["traceparent"].split("-")[1:3] for headers in stored] == [[run.trace_id, run.span_id]] * len(
        stored)


async def test_with_tracing_off_no_stored_run_event_carries_a_trace_context(
    start_runner: StartRunner, runs: Runs, nats_server: NatsServer, prefix: str, mock: OpenAIMock
) -> None:
    assert not TRACING.on
    mock.add_rule(Script(text="Untraced answer, several tokens long."))
    await start_runner()
    events = await runs.run("hi")
    assert type(events[-1]).__name__ == "RunCompleted"
    stored = await stored_headers(nats_server.url, prefix, events[0].run_id)
    assert len(stored) == len(events) >= 3
    assert [key for headers in stored for key in headers if key in ("traceparent", "tracestate")] == []


async def wait_for_the_end(nats_url: str, prefix: str, run_id: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        client = RunClient(nc, nc.jetstream(), Subjects(prefix))
        async with asyncio.timeout(20), contextlib.aclosing(client.follow(run_id)) as events:
            async for _ in events:
                pass
    finally:
        await nc.close()


async def stored_headers(nats_url: str, prefix: str, run_id: str) -> list[dict[str, str]]:
    """The headers of every stored event of the run, in order (as any reader of the stream gets them)."""
    nc = await nats.connect(nats_url)
    subjects = Subjects(prefix)
    found: list[dict[str, str]] = []
    try:
        seq = 1
        while True:
            try:
                msg = await nc.jetstream().get_msg(subjects.stream_name("runs"), seq=seq,
                                                   subject=subjects.run_events(run_id), next=True)
            except NotFoundError:
                return found
            found.append(dict(msg.headers or {}))
            seq = (msg.seq or seq) + 1
    finally:
        await nc.close()
