"""Every dialect checks access as /v1/runs does: a token to start, and only the run's owner reads, resumes, stops."""

from __future__ import annotations

import openai
import pytest
from aiohttp import ClientSession

from raaf.testing import OpenAIMock, Script

USER = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "secret"}]}


def client(gateway: str, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=token, max_retries=0)


async def test_without_a_token_every_dialect_answers_401_in_its_own_error_shape(
    secured_gateway: str, http: ClientSession
) -> None:
    async with client(secured_gateway, "no-such-token") as anonymous:
        with pytest.raises(openai.AuthenticationError):
            await anonymous.responses.create(model="assistant", input="hi")
        with pytest.raises(openai.AuthenticationError):
            await anonymous.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}],
                                                    tools=[{"type": "function", "function": {"name": "f"}}])
    async with http.post(f"{secured_gateway}/v1/ui/assistant/chat", json={"id": "c", "messages": [USER]}) as resp:
        assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    async with http.post(f"{secured_gateway}/v1/ag-ui/assistant",
                         json={"threadId": "t", "runId": "r", "messages": []}) as resp:
        assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"


async def test_a_response_is_read_continued_cancelled_and_deleted_only_by_its_owner(
    mock: OpenAIMock, secured_gateway: str
) -> None:
    mock.enqueue(Script(text="for alice only"))
    async with client(secured_gateway, "alice-token") as alice, client(secured_gateway, "bob-token") as bob:
        mine = await alice.responses.create(model="assistant", input="secret")
        with pytest.raises(openai.PermissionDeniedError):
            await bob.responses.retrieve(mine.id)
        with pytest.raises(openai.PermissionDeniedError):
            await bob.responses.retrieve(mine.id, stream=True, starting_after=0)
        with pytest.raises(openai.PermissionDeniedError):
            await bob.responses.create(model="assistant", input="and?", previous_response_id=mine.id)
        with pytest.raises(openai.PermissionDeniedError):
            await bob.responses.cancel(mine.id)
        with pytest.raises(openai.PermissionDeniedError):
            await bob.responses.delete(mine.id)
        assert (await alice.responses.retrieve(mine.id)).output_text == "for alice only"


async def test_a_chat_is_resumed_stopped_and_continued_only_by_its_owner(
    mock: OpenAIMock, secured_gateway: str, http: ClientSession
) -> None:
    mock.enqueue(Script(text="word " * 200, token_delay=0.02))
    alice, bob = {"Authorization": "Bearer alice-token"}, {"Authorization": "Bearer bob-token"}
    url = f"{secured_gateway}/v1/ui/assistant/chat"
    async with http.post(url, json={"id": "alices", "messages": [USER]}, headers=alice) as resp:
        assert resp.status == 200
        while b"text-delta" not in await resp.content.readline():  # the run is under way, the script taken
            pass
        # A chat id lives in its caller's namespace: bob's "alices" is a chat of his own, with nothing in it.
        async with http.get(f"{url}/alices/stream", headers=bob) as peek:
            assert peek.status == 204
        async with http.post(f"{url}/alices/stop", headers=bob) as stop:
            assert stop.status == 404
        async with http.post(url, json={"id": "alices", "messages": [USER]}, headers=bob) as own:
            assert own.status == 200  # his own chat's first run, not a continuation of hers
        async with http.post(f"{url}/alices/stop", headers=alice) as stop:
            assert stop.status == 202 and (await stop.json())["run_id"].endswith("_alices-1")
        assert b'"type":"abort"' in await resp.read()
