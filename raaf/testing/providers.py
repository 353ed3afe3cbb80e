"""The seed's test providers: ``MockProvider`` (scripted answers) served by ``StreamingProvider`` over the real
OpenAI wire, so agents' streaming is tested end to end with no API key.

::

    mock = MockProvider()
    mock.add_response("Hello from the mock.")
    async with StreamingProvider(provider=mock, enable_simulation=True, simulation_delay=0.01) as provider:
        async with provider.runner("assistant", nats_url=nats_url) as runner:   # an agent-runner in-process
            chunks = [chunk async for chunk in runner.run("Test message", stream=True)]
        # or give any agent-runner OPENAI_BASE_URL=provider.base_url (provider.environ())
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import msgspec

from raaf.agent import Agent
from raaf.runner import Runner
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from shared.errors import BadRequestError, ProtocolError
from shared.openai_mock import Match, OpenAIMock, Rule, Script, ToolCall


class MockProvider:
    """Scripted model answers: queued ones are used first, in order, then rules (first match), then the echo
    (``"You said: <message>"``). Answers added while a ``StreamingProvider`` serves it take effect at once."""

    def __init__(self, responses: Iterable[str | Script] = ()) -> None:
        self._queue: list[Script] = []
        self._rules: list[Rule] = []
        self._server: StreamingProvider | None = None
        for response in responses:
            self.add_script(response if isinstance(response, Script) else Script(text=response))

    def add_response(self, text: str = "", *, tool_calls: Sequence[ToolCall | Mapping[str, Any]] = (),
                     when: str | None = None, once: bool = False) -> Self:
        """Queue an answer (``when=None``) or answer every message containing ``when`` (a rule; ``once``: only
        the first). ``tool_calls`` are ``ToolCall``s or ``{"name": ..., "arguments": {...}}``."""
        calls = [call if isinstance(call, ToolCall) else msgspec.convert(call, ToolCall) for call in tool_calls]
        if not text and not calls:
            raise BadRequestError("a response needs text or tool calls")
        script = Script(text=text, tool_calls=calls)
        if when is None:
            return self.add_script(script)
        return self.add_rule(script, Match(user_contains=when), once=once)

    def add_script(self, script: Script) -> Self:
        """Queue a full ``Script`` (errors mid-stream, HTTP failures, pacing ...)."""
        self._queue.append(script)
        if self._server is not None:
            self._server.mock.enqueue(self._server.shape(script))
        return self

    def add_rule(self, script: Script, match: Match | None = None, *, once: bool = False) -> Self:
        rule = Rule(script=script, match=match or Match(), once=once)
        self._rules.append(rule)
        if self._server is not None:
            self._server.mock.add_rule(self._server.shape(script), match=rule.match, once=once)
        return self

    @property
    def queued(self) -> list[Script]:
        return list(self._queue)

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def attach(self, server: StreamingProvider) -> None:
        if self._server is not None and self._server is not server:
            raise ProtocolError("this MockProvider is served by another StreamingProvider already")
        self._server = server
        for script in self._queue:
            server.mock.enqueue(server.shape(script))
        for rule in self._rules:
            server.mock.add_rule(server.shape(rule.script), match=rule.match, once=rule.once)

    def detach(self) -> None:
        self._server = None


class StreamingProvider:
    """Serves a ``MockProvider`` as an OpenAI-compatible endpoint (``base_url``) on a loopback port.

    ``enable_simulation``: stream answers word by word, ``simulation_delay`` seconds apart (as a model does);
    off: each answer's text arrives as one chunk.
    """

    def __init__(self, provider: MockProvider | None = None, *, enable_simulation: bool = True,
                 simulation_delay: float = 0.01, host: str = "127.0.0.1", port: int = 0) -> None:
        if simulation_delay < 0:
            raise BadRequestError(f"simulation_delay must be >= 0, not {simulation_delay!r}")
        self.provider = provider or MockProvider()
        self.enable_simulation = enable_simulation
        self.simulation_delay = simulation_delay
        self.mock = OpenAIMock(host, port, token_delay=simulation_delay if enable_simulation else 0.0)
        self._started = False

    def shape(self, script: Script) -> Script:
        """A script as this provider streams it (whole text in one chunk without simulation)."""
        if self.enable_simulation or script.tokens is not None or not script.text:
            return script
        return msgspec.structs.replace(script, text="", tokens=[script.text])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what ``OPENAI_BASE_URL`` (or ``openai.AsyncOpenAI(base_url=)``) takes."""
        if not self._started:
            raise ProtocolError("start() the StreamingProvider first")
        return self.mock.url

    url = base_url

    def environ(self) -> dict[str, str]:
        """The variables that point an agent-runner at this provider."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "mock-key"}

    async def start(self) -> Self:
        if not self._started:
            await self.mock.start()
            self._started = True
            self.provider.attach(self)
        return self

    async def stop(self) -> None:
        if self._started:
            self.provider.detach()
            await self.mock.stop()
            self._started = False

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @contextlib.asynccontextmanager
    async def runner(self, agent: Agent | str = "assistant", *, nats_url: str | None = None,
                     prefix: str | None = None, **env: str) -> AsyncIterator[Runner]:
        """A ``Runner`` for ``agent`` with an agent-runner in this process answering from this provider (on
        ``nats_url``, under a fresh ``prefix`` unless given; ``env`` sets any other runner variable)."""
        prefix = prefix or f"t{uuid.uuid4().hex[:12]}"
        environ = {**os.environ, "HTTP_HOST": "127.0.0.1", "HTTP_PORT": "0", "RAAF_PREFIX": prefix,
                   "LOG_LEVEL": "warning", **({"NATS_URL": nats_url} if nats_url else {}), **self.environ(), **env}
        if "RAAF_AGENTS_FILE" not in env:  # the built-in assistant (and agents sent along), not the host's file
            environ.pop("RAAF_AGENTS_FILE", None)
        app = AgentRunnerApp(AgentRunnerSettings.from_env(environ))
        await app.start()
        try:
            async with Runner(agent, nats_url=environ.get("NATS_URL"), prefix=prefix) as client:
                yield client
        finally:
            await app.stop()
