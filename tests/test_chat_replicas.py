"""Two chat services side by side: each message is answered exactly once, every replica folds the same rooms,
and an answer whose relaying replica is stopped or killed mid-stream is finished by the other one."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from proto.chat import AgentMessage, AnswerDelta, AnswerStarted, UserMessage
from raaf.testing import OpenAIMock, Script
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.chat import ChatApp
from shared.clients.chat import FeedItem
from shared.devstack.servers import NatsServer, ValkeyServer, free_port
from shared.service.app import App
from tests.support.chat import ChatHarness, answered, answers, read_until, streamed_text
from tests.support.metrics_workload import sample
from tests.support.processes import ServiceProcess
from tests.support.runs import runner_env
from tests.support.waiting import eventually

StartApp = Callable[[App], Awaitable[App]]
ROOMS, USERS, MESSAGES = 3, 2, 3  # per room: USERS users post MESSAGES messages each


@pytest.fixture
async def harness(nats_server: NatsServer, redis_server: ValkeyServer, start_app: StartApp, tmp_path: Path
                  ) -> AsyncIterator[tuple[ChatHarness, OpenAIMock]]:
    async with OpenAIMock(token_delay=0.002) as mock:
        chat = ChatHarness(nats_server.url, redis_server.url, start_app)
        await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(
            runner_env(nats_server.url, mock.url, chat.prefix, tmp_path, RUN_MAX_CONCURRENT="50"))))
        yield chat, mock
        await chat.close()


def fingerprint(app: ChatApp) -> dict[str, tuple[int, int, bool, int]]:
    """What a replica knows of each room: messages, participants, whether it answers, and the waiting ones."""
    return {room.name: (room.messages, len(room.sessions), room.answer is not None, len(room.unanswered))
            for room in app.state.rooms.values()}


async def test_two_chat_replicas_answer_each_message_once_and_fold_the_same_rooms(
    harness: tuple[ChatHarness, OpenAIMock]
) -> None:
    chat_harness, _ = harness
    replicas = [await chat_harness.replica(CHAT_RATE_LIMIT="1000", INSTANCE_ID=f"chat{i}") for i in range(2)]
    chat = await chat_harness.client(timeout=10)
    names = [f"room-{r}" for r in range(ROOMS)]
    readers = {}
    for name in names:
        await chat.create_room(name)
        for u in range(USERS):
            joined = await chat.join(name, f"user{u}", f"user{u}-1")
            if u == 0:
                readers[name] = await chat.feed(joined)
    try:
        posts = [chat.post(name, f"user{u}", f"user{u}-1", f"{name} user{u} message {m}")
                 for name in names for u in range(USERS) for m in range(MESSAGES)]
        await asyncio.gather(*posts)
        per_room = USERS * MESSAGES
        seen: dict[str, list[FeedItem]] = {
            name: await read_until(readers[name], answered(per_room), within=60) for name in names}
    finally:
        for reader in readers.values():
            await reader.close()
    for name, items in seen.items():
        asked = {i.event.id: i.event.text for i in items if isinstance(i.event, UserMessage)}
        started = Counter(i.event.in_reply_to for i in items if isinstance(i.event, AnswerStarted))
        replies = Counter(a.in_reply_to for a in answers(items))
        assert len(asked) == per_room
        assert started == replies == Counter(asked.keys()), f"{name}: each message started and answered once"
        for answer in answers(items):
            assert answer.status == "completed" and answer.text == f"You said: {asked[answer.in_reply_to]}"
            assert streamed_text(items, answer.id) == answer.text, "every token in the feed once"
    handled = [app.chat_metrics.commands.labels(command="post_message", outcome="ok")._value.get()
               for app in replicas]
    assert all(count > 0 for count in handled), f"the queue group shared the commands: {handled}"

    async def same_rooms() -> bool:
        a, b = (fingerprint(app) for app in replicas)
        return a == b and len(a) == ROOMS and all(not answering for _, _, answering, _ in a.values())

    await eventually(same_rooms, 10, interval=0.05, what="both replicas folded the same rooms")


async def test_an_answer_whose_replica_stops_mid_stream_is_finished_by_the_other(
    harness: tuple[ChatHarness, OpenAIMock]
) -> None:
    chat_harness, mock = harness
    replicas = [await chat_harness.replica(INSTANCE_ID=f"chat{i}", CHAT_RELAY_ADOPT_AFTER="1") for i in range(2)]
    chat = await chat_harness.client(timeout=10)
    await chat.create_room("handover")
    reader = await chat.feed(await chat.join("handover", "alice", "alice-1"))
    text = " ".join(f"w{i}" for i in range(120))
    mock.enqueue(Script(text=text, token_delay=0.03))
    try:
        await chat.post("handover", "alice", "alice-1", "a long one")

        def relaying() -> list[ChatApp]:
            return [app for app in replicas if app.relay.relaying]

        await eventually(lambda: len(relaying()) >= 1, 10, interval=0.02, what="a replica relays the answer")
        (relay,) = relaying()
        await relay.stop()
        arrivals = [time.monotonic()]  # the stop, then each feed item after it
        items: list[FeedItem] = []
        while not answered(1)(items):
            items.append(await asyncio.wait_for(reader.next(), 60))
            arrivals.append(time.monotonic())
    finally:
        await reader.close()
    pause = max(b - a for a, b in itertools.pairwise(arrivals))
    print(f"\nchat replica stopped mid-answer: longest pause in the room's feed {pause:.2f}s "
          f"(CHAT_RELAY_ADOPT_AFTER=1)")
    (answer,) = [i.event for i in items if isinstance(i.event, AgentMessage)]
    assert answer.status == "completed" and answer.text == text
    assert streamed_text(items, answer.id) == text, "the other replica relayed the rest, nothing twice"


async def posts_handled(http: aiohttp.ClientSession, url: str) -> float:
    """How many ``post_message`` commands the chat replica at ``url`` handled, from its ``/metrics``."""
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return sample(await resp.text(), "raaf_chat_commands_total", command="post_message", outcome="ok")


async def test_an_answer_whose_replica_is_killed_mid_stream_is_finished_by_the_one_still_running(
    harness: tuple[ChatHarness, OpenAIMock], service_process: Callable[..., ServiceProcess]
) -> None:
    chat_harness, mock = harness
    # Both replicas are child processes, so whichever the queue group hands the post to can be killed: it begins
    # and relays the answer; the other one, running all along, must adopt it.
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    replicas = [service_process("services.chat", chat_harness.env(
        HTTP_PORT=url.rsplit(":", 1)[1], INSTANCE_ID=f"chat{i}", CHAT_RELAY_ADOPT_AFTER="1"))
        for i, url in enumerate(urls)]
    await asyncio.gather(*(replica.wait_ready(url) for replica, url in zip(replicas, urls, strict=True)))
    chat = await chat_harness.client(timeout=10)
    text = " ".join(f"k{i}" for i in range(120))
    await chat.create_room("kill")
    reader = await chat.feed(await chat.join("kill", "alice", "alice-1"))
    mock.enqueue(Script(text=text, token_delay=0.03))
    try:
        await chat.post("kill", "alice", "alice-1", "a long one")
        first = await read_until(reader, lambda items: any(isinstance(i.event, AnswerDelta) for i in items))
        async with aiohttp.ClientSession() as http:
            async def handled() -> list[float]:
                return [await posts_handled(http, url) for url in urls]

            async def counted() -> bool:
                return sum(await handled()) == 1

            await eventually(counted, 10, interval=0.05, what="a replica counted the post")
            counts = await handled()
        assert sorted(counts) == [0, 1], f"one replica handled the post: {counts}"
        victim = replicas[counts.index(1)]
        victim.kill()
        arrivals = [time.monotonic()]
        items = list(first)
        while not answered(1)(items):
            items.append(await asyncio.wait_for(reader.next(), 60))
            arrivals.append(time.monotonic())
    finally:
        await reader.close()
    pause = max(b - a for a, b in itertools.pairwise(arrivals))
    print(f"\nchat replica kill -9 mid-answer: longest pause in the room's feed {pause:.2f}s "
          f"(CHAT_RELAY_ADOPT_AFTER=1)")
    (answer,) = answers(items)
    assert answer.status == "completed" and answer.text == text
    assert streamed_text(items, answer.id) == text, "the survivor relayed the rest, nothing twice"
