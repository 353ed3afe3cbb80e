"""``RealTimeChat``: the seed's chat system (rooms, agents, handoffs, typing, history) over the platform.

::

    chat = RealTimeChat(agent=support, websocket_port=8080, redis_url="redis://localhost:6379")
    chat.add_agent(technical)  # a specialist the primary agent may hand off to
    await chat.create_room("General Support", {"max_participants": 50, "message_history": 100})
    await chat.create_room("Technical Discussion", max_participants=20, message_history=200, restricted=True)
    chat.configure(enable_handoffs=True, max_message_length=2000, rate_limit=60)
    await chat.start()  # ws://localhost:8080/ws (and the /rooms page): gateway, chat service, agent runner
    print(await chat.stats())

With ``run_services=False`` it is a client of a platform that runs already (``NATS_URL``): it creates rooms
and reads stats there, and its ``configure`` applies to the rooms it creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from proto.chat import BusyPolicy, FeedMessage, MessageAccepted, RoomInfo
from proto.runs import AgentSpec
from raaf.agent import Agent
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from services.chat import ChatApp, ChatSettings
from services.gateway import GatewayApp, GatewaySettings
from shared.clients.chat import ChatClient, RoomEvent
from shared.devstack.servers import EmbeddedNats, url_reachable
from shared.errors import ConnectionError
from shared.service.app import App
from shared.service.settings import NATS_URL, PREFIX

AgentLike = Agent | AgentSpec | str
_ROOM_OPTIONS = ("max_participants", "message_history", "restricted", "allowed", "busy_policy",
                 "max_message_length", "agent")


def agent_spec(agent: AgentLike) -> AgentSpec:
    """An ``Agent`` (or spec) as rooms carry it; a bare name refers to an agent the runners serve."""
    if isinstance(agent, Agent):
        return agent.spec()
    if isinstance(agent, AgentSpec):
        return agent
    return AgentSpec(name=agent)


@dataclass
class ChatConfig:
    """The seed's ``chat.configure`` block and ``config.chat`` keys (``CHAT_*`` for the service it runs)."""

    enable_handoffs: bool = True
    enable_message_history: bool = True
    enable_typing_indicators: bool = True
    max_message_length: int = 2000
    rate_limit: int = 60  # messages per minute per user
    max_rooms: int = 100
    max_participants_per_room: int = 50
    message_history_size: int = 500
    typing_timeout: float = 6.0
    busy_policy: str = "enqueue"  # what a room does with a message while its agent answers: reject, interrupt

    def environ(self) -> dict[str, str]:
        return {f"CHAT_{f.name.upper()}": _env_value(getattr(self, f.name)) for f in fields(self)}


def _env_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class ChatParticipant:
    """A participant in a room from Python (a bot, a test, a bridge): it posts, types, asks for handoffs and
    reads the room's events in the order every participant sees them."""

    def __init__(self, chat: ChatClient, room: str, user: str, session: str, subs: list[Subscription],
                 events: asyncio.Queue[RoomEvent]) -> None:
        self.chat = chat
        self.room = room
        self.user = user
        self.session = session
        self._subs = subs
        self._events = events

    async def send(self, text: str, *, client_id: str | None = None) -> MessageAccepted:
        return await self.chat.post(self.room, self.user, self.session, text, client_id=client_id)

    async def typing(self, typing: bool = True) -> None:
        await self.chat.typing(self.room, self.user, self.session, typing)

    async def handoff(self, agent: str, *, reason: str = "") -> RoomInfo:
        return await self.chat.handoff(self.room, self.user, self.session, agent, reason=reason)

    async def next_event(self, timeout: float | None = None) -> RoomEvent:
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self) -> AsyncIterator[RoomEvent]:
        while True:
            yield await self._events.get()

    async def leave(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self.chat.leave(self.room, self.user, self.session)


class ChatRoom:
    """A room of this chat (created when the chat starts, or at once if it runs)."""

    def __init__(self, chat: RealTimeChat, name: str, options: dict[str, Any]) -> None:
        self._chat = chat
        self.name = name
        self.options = options

    async def info(self) -> RoomInfo:
        return await self._chat.client.room(self.name)

    async def add_agent(self, agent: AgentLike) -> RoomInfo:
        return await self._chat.client.add_agent(self.name, agent_spec(agent))

    async def history(self, user: str, *, limit: int | None = None) -> list[FeedMessage]:
        return await self._chat.client.history(self.name, user, granted=True, limit=limit)

    async def join(self, user: str, session: str | None = None) -> ChatParticipant:
        """Join as ``user`` (trusted: Python code acts for the operator, so restricted rooms admit it)."""
        client = self._chat.client
        session = session or f"py-{os.getpid()}-{id(self):x}-{user}"
        joined = await client.join(self.name, user, session, granted=True)
        queue: asyncio.Queue[RoomEvent] = asyncio.Queue()

        async def put(event: RoomEvent) -> None:
            queue.put_nowait(event)

        subs = await client.follow_room(joined, put)
        return ChatParticipant(client, self.name, user, session, subs, queue)


class RealTimeChat:
    """The seed's ``RealTimeChat``: a chat server in this process, or a client of a running platform."""

    def __init__(
        self,
        agent: AgentLike | None = None,
        *,
        websocket_port: int = 8080,
        websocket_host: str = "localhost",
        redis_url: str | None = None,
        nats_url: str | None = None,
        prefix: str | None = None,
        run_services: bool = True,
        run_agents: bool = True,
        start_nats: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` sets any other variable of the services it runs (``OPENAI_BASE_URL``, ``GATEWAY_AUTH_MODE`` ...)."""
        self.agent = agent_spec(agent) if agent is not None else None
        self.agents: list[AgentSpec] = []
        self.config = ChatConfig()
        self.rooms: dict[str, ChatRoom] = {}
        self.run_services = run_services
        self.run_agents = run_agents
        self.start_nats = start_nats
        self._environ: dict[str, str] = {**os.environ, **(env or {})}
        self._environ.update(WEBSOCKET_PORT=str(websocket_port), WEBSOCKET_HOST=websocket_host)
        if redis_url is not None:
            self._environ["REDIS_URL"] = redis_url
        if nats_url is not None:
            self._environ["NATS_URL"] = nats_url
        if prefix is not None:
            self._environ["RAAF_PREFIX"] = prefix
        self._apps: list[App] = []
        self._gateway: GatewayApp | None = None
        self._nc: NATS | None = None
        self._client: ChatClient | None = None
        self._nats = EmbeddedNats("raaf-chat-nats-")

    # ---- the seed's set-up calls -----------------------------------------------------------------

    def configure(self, fn: Callable[[ChatConfig], None] | None = None, **options: Any) -> ChatConfig:
        """``chat.configure(rate_limit=60)`` or ``chat.configure(lambda config: ...)``; before ``start``."""
        for name, value in options.items():
            if not hasattr(self.config, name):
                raise TypeError(f"unknown chat option {name!r}")
            setattr(self.config, name, value)
        if fn is not None:
            fn(self.config)
        return self.config

    def add_agent(self, agent: AgentLike) -> None:
        """A specialist every room of this chat gets (rooms created already get it when the chat starts)."""
        spec = agent_spec(agent)
        self.agents = [a for a in self.agents if a.name != spec.name] + [spec]

    async def create_room(self, name: str, options: Mapping[str, Any] | None = None, **kw: Any) -> ChatRoom:
        """The seed's ``create_room(name, {max_participants:, message_history:, restricted:})``."""
        merged = {**(options or {}), **kw}
        unknown = set(merged) - set(_ROOM_OPTIONS)
        if unknown:
            raise TypeError(f"unknown room options: {', '.join(sorted(unknown))}")
        room = self.rooms[name] = ChatRoom(self, name, merged)
        if self._client is not None:
            await self._open(room)
        return room

    # ---- running ---------------------------------------------------------------------------------------

    @property
    def client(self) -> ChatClient:
        if self._client is None:
            raise ConnectionError("the chat is not started")
        return self._client

    @property
    def url(self) -> str:
        """Where WebSocket clients connect (``ws://host:port/ws``); the browser page is ``/rooms``."""
        if self._gateway is None:
            raise ConnectionError("this chat runs no gateway (run_services=False, or not started)")
        return self._gateway.http_url.replace("http://", "ws://", 1) + "/ws"

    @property
    def running(self) -> bool:
        return self._client is not None

    async def start(self) -> None:
        if self._client is not None:
            return
        nats_url = self._environ.get(NATS_URL.env, NATS_URL.default)
        if self.start_nats and self.run_services and not url_reachable(nats_url):
            self._environ["NATS_URL"] = await self._nats.start()
        try:
            if self.run_services:
                await self._start_services()
            url = self._environ.get(NATS_URL.env, NATS_URL.default)
            try:
                self._nc = await nats.connect(url.split(","), connect_timeout=2, max_reconnect_attempts=-1)
            except Exception as exc:
                raise ConnectionError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from exc
            self._client = ChatClient(self._nc, prefix=self._environ.get(PREFIX.env, PREFIX.default))
            for room in self.rooms.values():
                await self._open(room)
        except BaseException:
            await self.stop()
            raise

    async def _start_services(self) -> None:
        internal = {**self._environ, **self.config.environ(), "HTTP_PORT": self._environ.get("CHAT_HTTP_PORT", "0")}
        chat = ChatApp(ChatSettings.from_env(internal))
        await chat.start()
        self._apps.append(chat)
        if self.run_agents:
            runner = AgentRunnerApp(AgentRunnerSettings.from_env({**internal, "HTTP_PORT": "0"}))
            await runner.start()
            self._apps.append(runner)
        self._gateway = GatewayApp(GatewaySettings.from_env(self._environ))
        await self._gateway.start()
        self._apps.append(self._gateway)

    async def _open(self, room: ChatRoom) -> None:
        options = dict(room.options)
        primary = options.pop("agent", None)
        primary_spec = agent_spec(primary) if primary is not None else self.agent
        agents = ([primary_spec] if primary_spec is not None else []) + [
            a for a in self.agents if primary_spec is None or a.name != primary_spec.name]
        policy = options.pop("busy_policy", None)
        max_length = options.pop("max_message_length", None)
        if not self.run_services:  # the running service has its own limits: this configuration goes per room
            policy = policy or self.config.busy_policy
            max_length = max_length or self.config.max_message_length
        info = await self.client.create_room(
            room.name, agent=primary_spec.name if primary_spec else None, agents=agents,
            busy_policy=BusyPolicy(policy) if policy else None, max_message_length=max_length, exist_ok=True,
            **options)
        for spec in agents:  # a room that existed already (a persistent store) gets this chat's agents
            if spec.name not in info.agents:
                await self.client.add_agent(room.name, spec)

    async def stop(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._client = None
        for app in reversed(self._apps):
            await app.stop()
        self._apps.clear()
        self._gateway = None
        await self._nats.stop()

    async def serve_forever(self) -> None:
        """Start, run until cancelled (Ctrl-C), stop."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> RealTimeChat:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- figures -----------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """The seed's ``chat.stats``: connected clients, active sessions and streams, available agents, total
        messages, and participants and messages per room (by name)."""
        stats = await self.client.stats()
        shaped: dict[str, Any] = _without_type(msgspec.to_builtins(stats))
        return shaped


def _without_type(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_type(v) for k, v in value.items() if k != "type"}
    return value

