"""``StreamProcessor`` on both sides of a run (client and agent-runner), and the seed's mock providers, against
real NATS, a real agent-runner and the OpenAI-wire mock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import raaf
from proto.runs import RunCompleted, TextDelta
from raaf.testing import MockProvider, OpenAIMock, Script, StreamingProvider, ToolCall
from services.agent_runner import AgentRunnerApp, AgentRunnerSettings
from shared.devstack.servers import NatsServer
from shared.errors import SettingsError
from shared.service.app import App
from tests.support.env import unique_prefix
from tests.support.runs import runner_env
from tests.support.stream_processors import Redactor

StartApp = Callable[[App], Awaitable[App]]


class Stamped(raaf.StreamProcessor):
    """The seed's CustomStreamProcessor: super(), then metadata."""

    def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
        processed = super().process_chunk(chunk, stream_id)
        if processed is not None:
            processed.update(stream_id=stream_id, processor=type(self).__name__)
        return processed


# ---- the pipeline itself ----------------------------------------------------------------------------------


async def test_filters_run_in_order_and_a_filter_returning_none_drops_the_chunk() -> None:
    processor = raaf.StreamProcessor(filters=[
        lambda c: None if c["content"] == "drop me" else c,
        lambda c: {**c, "filtered": True},
        lambda c: {**c, "order": [*c.get("order", []), 2]} if c.get("filtered") else c,
    ])
    out = [c for text in ["keep", "drop me", "also"] for c in await processor.apply(text, "s1")]
    assert [(c["content"], c["filtered"], c["order"]) for c in out] == [("keep", True, [2]), ("also", True, [2])]
    assert processor.stats()["chunks_dropped"] == 1 and processor.stats()["chunks_out"] == 2


async def test_text_longer_than_chunk_size_is_cut_after_processing_and_the_window_is_bounded() -> None:
    processor = Redactor(chunk_size=4, buffer_size=10)
    out = await processor.apply("a secret plan", "s1")
    assert [c["content"] for c in out] == ["a **", "****", " pla", "n"]
    assert "".join(c["content"] for c in out) == "a ****** plan"
    assert processor.window("s1") == "***** plan"  # the last buffer_size characters only
    processor.end_stream("s1")
    assert processor.window("s1") == ""


async def test_handle_error_decides_what_a_failing_chunk_becomes() -> None:
    class Recovering(raaf.StreamProcessor):
        def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
            raise ValueError("bad chunk")

        def handle_error(self, error: BaseException, stream_id: str) -> dict[str, Any] | None:
            return {"type": "error", "content": f"[{stream_id}: {error}]"}

    assert [c["content"] for c in await Recovering().apply("x", "s9")] == ["[s9: bad chunk]"]
    failing = raaf.StreamProcessor(filters=[lambda c: c["missing"]])  # the default re-raises
    with pytest.raises(KeyError, match="missing"):
        await failing.apply("x", "s1")
    assert failing.stats()["errors"] == 1


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"buffer_size": -1}, {"filters": ["not callable"]},
                                    {"chunk_size": 1.5}])
def test_bad_sizes_and_filters_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(raaf.ConfigurationError):
        raaf.StreamProcessor(**kwargs)


def test_sizes_default_to_the_streaming_configuration() -> None:
    from raaf.config import reset_configuration
    try:
        raaf.configure(streaming={"chunk_size": 256, "buffer_size": 1024})
        processor = raaf.StreamProcessor()
        assert (processor.chunk_size, processor.buffer_size) == (256, 1024)
    finally:
        reset_configuration()


# ---- client side ------------------------------------------------------------------------------------------


@pytest.fixture
async def provider() -> AsyncIterator[StreamingProvider]:
    async with StreamingProvider(MockProvider(), simulation_delay=0.0) as served:
        yield served


async def test_runner_run_with_a_processor_yields_processed_chunks(provider: StreamingProvider,
                                                                   nats_server: NatsServer) -> None:
    provider.provider.add_response("the secret is out")
    provider.provider.add_response("again the secret")
    async with provider.runner("assistant", nats_url=nats_server.url) as runner:
        processor = Stamped(filters=[lambda c: {**c, "content": c["content"].replace("secret", "******")}
                                     if c["content"] else c])
        chunks = [c async for c in runner.run("tell me", stream=True, processor=processor)]
        text = "".join(c["content"] for c in chunks if c["type"] == "run_text_delta")
        assert text == "the ****** is out"
        assert {c["processor"] for c in chunks} == {"Stamped"} and len({c["stream_id"] for c in chunks}) == 1
        assert chunks[-1]["type"] == "run_completed"
        wrapped = [c async for c in Redactor().process(runner.run("again", stream=True))]
        assert "".join(c["content"] or "" for c in wrapped if c["type"] == "run_text_delta") == "again the ******"
        with pytest.raises(raaf.BadRequestError):
            runner.run("x", processor=processor)  # type: ignore[call-overload]


async def test_a_failed_run_reaches_handle_error_with_its_typed_error(provider: StreamingProvider,
                                                                      nats_server: NatsServer) -> None:
    provider.provider.add_script(Script(text="never finishes", token_delay=5.0))
    seen: list[BaseException] = []

    class Fallback(raaf.StreamProcessor):
        def handle_error(self, error: BaseException, stream_id: str) -> dict[str, Any] | None:
            seen.append(error)
            return {"type": "fallback", "content": "(no answer in time)"}

    async with provider.runner("assistant", nats_url=nats_server.url, STREAMING_TIMEOUT="0.5") as runner:
        chunks = [c async for c in runner.run("hi", stream=True, processor=Fallback())]
    assert chunks[-1] == {"type": "fallback", "content": "(no answer in time)"}
    assert isinstance(seen[0], raaf.TimeoutError)


# ---- agent-runner side ------------------------------------------------------------------------------------


async def start_runner(nats_server: NatsServer, mock: OpenAIMock, tmp_path: Path, start_app: StartApp,
                       **extra: str) -> str:
    prefix = unique_prefix()
    env = runner_env(nats_server.url, mock.url, prefix, tmp_path, **extra)
    await start_app(AgentRunnerApp(AgentRunnerSettings.from_env(env)))
    return prefix


async def test_the_runners_processor_shapes_what_every_client_sees(nats_server: NatsServer, mock: OpenAIMock,
                                                                  tmp_path: Path, start_app: StartApp) -> None:
    prefix = await start_runner(nats_server, mock, tmp_path, start_app, STREAMING_CHUNK_SIZE="3",
                                RAAF_STREAM_PROCESSOR="tests.support.stream_processors:Redactor")
    mock.enqueue(Script(text="my secret password"))
    async with raaf.Runner("assistant", nats_url=nats_server.url, prefix=prefix) as runner:
        chunks = [c async for c in runner.run("hi", stream=True)]
    deltas = [c.event.delta for c in chunks if isinstance(c.event, TextDelta)]
    assert "".join(deltas) == "my ****** password" and max(map(len, deltas)) <= 3
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))  # still gap-free
    final = chunks[-1].event
    assert isinstance(final, RunCompleted) and final.output == "my ****** password"


async def test_a_failing_runner_processor_fails_the_run_and_publishes_nothing_unprocessed(
        nats_server: NatsServer, mock: OpenAIMock, tmp_path: Path, start_app: StartApp) -> None:
    prefix = await start_runner(nats_server, mock, tmp_path, start_app,
                                RAAF_STREAM_PROCESSOR="tests.support.stream_processors:Exploding")
    mock.enqueue(Script(text="my secret password"))
    seen: list[str] = []
    async with raaf.Runner("assistant", nats_url=nats_server.url, prefix=prefix) as runner:
        with pytest.raises(raaf.InternalError, match="stream processor Exploding failed"):
            async for chunk in runner.run("hi", stream=True):
                seen.append(chunk.content or "")
    assert "secret" not in "".join(seen)


@pytest.mark.parametrize("spec", ["tests.support.stream_processors:NotAProcessor", "tests.nowhere:Thing", "no-colon",
                                  "tests.support.stream_processors:Missing"])
def test_a_bad_stream_processor_setting_names_the_variable(spec: str) -> None:
    env = {"RAAF_STREAM_PROCESSOR": spec, "NATS_URL": "nats://127.0.0.1:1"}
    with pytest.raises(SettingsError) as failed:
        AgentRunnerApp(AgentRunnerSettings.from_env(env))
    assert failed.value.variable == "RAAF_STREAM_PROCESSOR"


# ---- the seed's "Mock Streaming Provider" test --------------------------------------------------------------


async def test_mock_streaming_provider_streams_an_agents_answer_without_an_api_key(nats_server: NatsServer) -> None:
    mock_provider = MockProvider()
    mock_provider.add_response("Streaming works in tests.")
    mock_provider.add_response(tool_calls=[{"name": "transfer_to_helper"}], when="hand over")
    streaming_provider = StreamingProvider(provider=mock_provider, enable_simulation=True, simulation_delay=0.01)
    agent = raaf.Agent(name="TestAgent", instructions="Test.", handoffs=[raaf.Agent(name="helper")])
    async with streaming_provider, streaming_provider.runner(agent, nats_url=nats_server.url) as runner:
        started = time.monotonic()
        chunks = [chunk async for chunk in runner.run("Test message", stream=True)]
        assert time.monotonic() - started >= 0.03  # simulated: 4 words, 0.01 s apart
        assert chunks and all(hasattr(chunk, "content") for chunk in chunks)
        assert "".join(c.content or "" for c in chunks) == "Streaming works in tests."
        echoed = await runner.run("echo this")
        assert echoed.output == "You said: echo this"


async def test_without_simulation_an_answer_arrives_as_one_chunk(nats_server: NatsServer) -> None:
    async with StreamingProvider(MockProvider(["One piece of text."]), enable_simulation=False) as provider, \
            provider.runner(nats_url=nats_server.url) as runner:
        texts = [c.content async for c in runner.run("hi", stream=True) if c.content]
    assert texts == ["One piece of text."]


def test_mock_provider_rejects_empty_responses_and_unstarted_providers_have_no_url() -> None:
    with pytest.raises(raaf.BadRequestError):
        MockProvider().add_response("")
    with pytest.raises(raaf.ProtocolError):
        _ = StreamingProvider().base_url
    with pytest.raises(raaf.BadRequestError):
        StreamingProvider(simulation_delay=-1)
    assert MockProvider().add_response(tool_calls=[ToolCall(name="x")]).queued[0].tool_calls[0].name == "x"
