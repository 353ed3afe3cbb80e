"""Helpers for chat tests: chat replicas under a unique prefix, NATS-level clients, reading the feed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NATS

from proto.chat import AgentMessage, AnswerDelta
from services.chat import ChatApp, ChatSettings
from shared.clients.chat import ChatClient, FeedItem, Reader
from shared.service.app import App
from tests.support.env import service_env


class ChatHarness:
    """Starts chat replicas in this process under one prefix; gives NATS clients; cleans up at the end."""

    def __init__(self, nats_url: str, redis_url: str, start_app: Callable[[App], Awaitable[App]]) -> None:
        self.nats_url = nats_url
        self.redis_url = redis_url
        self.start_app = start_app
        self.prefix = f"c{uuid.uuid4().hex[:10]}"
        self.connections: list[NATS] = []

    def env(self, **extra: str) -> dict[str, str]:
        return service_env(self.nats_url, self.redis_url, RAAF_PREFIX=self.prefix, **extra)

    async def replica(self, **extra: str) -> ChatApp:
        app = ChatApp(ChatSettings.from_env(self.env(**extra)))
        await self.start_app(app)
        return app

    async def client(self, timeout: float = 5.0) -> ChatClient:
        nc = await nats.connect(self.nats_url)
        self.connections.append(nc)
        return ChatClient(nc, prefix=self.prefix, timeout=timeout)

    async def close(self) -> None:
        for nc in self.connections:
            await nc.close()


async def read_until(reader: Reader[FeedItem], done: Callable[[list[FeedItem]], bool], *, within: float = 10.0
                     ) -> list[FeedItem]:
    """Feed items until ``done(items)`` holds; fails after ``within`` seconds."""
    items: list[FeedItem] = []
    async with asyncio.timeout(within):
        while not done(items):
            items.append(await reader.next())
    return items


def answers(items: list[FeedItem]) -> list[AgentMessage]:
    return [item.event for item in items if isinstance(item.event, AgentMessage)]


def answered(count: int) -> Callable[[list[FeedItem]], bool]:
    return lambda items: len(answers(items)) >= count


def streamed_text(items: list[FeedItem], run_id: str) -> str:
    return "".join(item.event.delta for item in items
                   if isinstance(item.event, AnswerDelta) and item.event.run_id == run_id)
