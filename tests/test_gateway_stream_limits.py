"""Every long-lived stream is a connection: it counts against the identity's and the address's limits beside the
WebSockets, and it ends with its dialect's typed error when its token expires."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from raaf.testing import OpenAIMock, Script
from services.gateway import GatewayApp, GatewaySettings
from shared.devstack.servers import NatsServer
from shared.errors import SettingsError
from tests.support.dialects_fixtures import StartApp, start_gateway
from tests.support.gateway import SECRET, connect, expect_close, make_gateway, token, ws_url
from tests.support.sse import sse_events
from tests.support.waiting import eventually

JWT = {"GATEWAY_AUTH_MODE": "jwt", "GATEWAY_JWT_SECRET": SECRET}
USER = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hello"}]}
SLOW = Script(text="word " * 400, token_delay=0.05)  # twenty seconds of answer: it outlives any token here


def bearer(jwt: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt}"}


def stream_requests(jwt: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """One request per streaming dialect: name -> (method, path, JSON body)."""
    return {
        "runs": ("POST", "/v1/runs", {"agent": "assistant", "input": "hi", "stream": True}),
        "chat-completions": ("POST", "/v1/chat/completions", {"model": "assistant", "stream": True,
                                                              "messages": [{"role": "user", "content": "hi"}]}),
        "responses": ("POST", "/v1/responses", {"model": "assistant", "input": "hi", "stream": True}),
        "ai-sdk": ("POST", "/v1/ui/assistant/chat", {"id": f"limits-{jwt[-8:]}", "messages": [USER]}),
        "ag-ui": ("POST", "/v1/ag-ui/assistant", {"threadId": "t1", "runId": f"agui-{int(time.time() * 1e6)}",
                                                  "messages": [{"id": "u1", "role": "user", "content": "hi"}]}),
    }


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def test_run_and_dialect_streams_count_against_the_identitys_connection_limit(
    nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp,
    http: aiohttp.ClientSession
) -> None:
    url = await start_gateway(nats_server, mock, prefix, tmp_path, start_app, **JWT,
                              GATEWAY_MAX_CONNECTIONS_PER_IDENTITY="2")
    alice, bob = token("alice"), token("bob")
    mock.enqueue(SLOW)
    ws, _ = await connect(http, f"{url.replace('http', 'ws', 1)}/ws?token={alice}")
    async with http.post(f"{url}/v1/runs", json={"agent": "assistant", "input": "hi", "stream": True},
                         headers=bearer(alice)) as held:
        assert held.status == 200
        first = await anext(sse_events(held))
        run_id = first.json()["run_id"]
        # Alice holds a WebSocket and a run stream: every further stream of hers is refused before a run starts.
        for name, (method, path, body) in stream_requests(alice).items():
            async with http.request(method, f"{url}{path}", json=body, headers=bearer(alice)) as refused:
                assert refused.status == 429, name
                answer = await refused.json()
                code = answer["error"]["code"] if "error" in answer else answer["code"]
                assert code == "limit_exceeded", (name, answer)
                if "details" in answer:
                    assert answer["details"]["limit"] == 2
        async with http.get(f"{url}/v1/runs/{run_id}/events", headers=bearer(alice)) as follow:
            assert follow.status == 429 and (await follow.json())["details"]["limit"] == 2
        async with http.get(f"{url}/v1/channels/news/events", headers=bearer(alice)) as channel:
            assert channel.status == 429
        refused_ws = await http.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?token={alice}")
        assert await expect_close(refused_ws) == 1013
        async with http.get(f"{url}/v1/runs/{run_id}/events", headers=bearer(bob)) as other:
            assert other.status == 403  # bob is not limited by alice's count (and may not read her run)
    await ws.close()

    async def admitted_again() -> bool:
        async with http.get(f"{url}/v1/runs/{run_id}/events", headers=bearer(alice),
                            params={"after": "1"}) as again:
            return again.status == 200

    await eventually(admitted_again, 10, what="alice's slots are free once her streams end")


async def test_two_identities_from_one_address_share_its_connection_limit(
    nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp,
    http: aiohttp.ClientSession
) -> None:
    url = await start_gateway(nats_server, mock, prefix, tmp_path, start_app, **JWT,
                              GATEWAY_MAX_CONNECTIONS_PER_ADDRESS="2")
    ws_base = f"{url.replace('http', 'ws', 1)}/ws"
    alice, _ = await connect(http, f"{ws_base}?token={token('alice')}")
    async with http.get(f"{url}/v1/channels/news/events", headers=bearer(token("bob"))) as bobs:
        assert bobs.status == 200
        carol = token("carol")
        refused = await http.ws_connect(f"{ws_base}?token={carol}")
        assert await expect_close(refused) == 1013
        unauthenticated = await http.ws_connect(ws_base)  # counted too: an address cannot flood with anonymous ones
        assert await expect_close(unauthenticated) == 1013
        async with http.get(f"{url}/v1/channels/news/events", headers=bearer(carol)) as sse:
            answer = await sse.json()
            assert (sse.status, answer["code"], answer["details"]["limit"]) == (429, "limit_exceeded", 2)
            assert "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS" in answer["message"]
        async with http.post(f"{url}/v1/runs", json={"agent": "assistant", "input": "hi", "stream": True},
                             headers=bearer(carol)) as run:
            assert run.status == 429 and (await run.json())["code"] == "limit_exceeded"
    await alice.close()

    async def admitted() -> bool:  # once the gateway has seen alice go, one slot is free again
        ws = await http.ws_connect(f"{ws_base}?token={carol}")
        first = await ws.receive(timeout=5)
        await ws.close()
        return first.type is aiohttp.WSMsgType.TEXT and json.loads(first.data).get("subject") == "carol"

    await eventually(admitted, 10, what="carol admitted after alice left")


async def test_behind_a_trusted_proxy_the_forwarded_address_counts_and_a_spoofed_header_does_not(
    nats_server: NatsServer, start_app: StartApp, http: aiohttp.ClientSession
) -> None:
    proxied = await start_app(make_gateway(nats_server.url, GATEWAY_MAX_CONNECTIONS_PER_ADDRESS="1",
                                           GATEWAY_TRUSTED_PROXIES="127.0.0.0/8, ::1"))
    direct = await start_app(make_gateway(nats_server.url, GATEWAY_MAX_CONNECTIONS_PER_ADDRESS="1"))
    assert isinstance(proxied, GatewayApp) and isinstance(direct, GatewayApp)

    def via(address: str) -> dict[str, str]:
        return {"X-Forwarded-For": address}

    one, _ = await connect(http, ws_url(proxied), headers=via("203.0.113.1"))
    two, _ = await connect(http, ws_url(proxied), headers=via("203.0.113.2"))  # another client behind the proxy
    # What the client wrote before the proxy's own hop is not believed: this is 203.0.113.1 again.
    spoofed = await http.ws_connect(ws_url(proxied), headers=via("198.51.100.7, 203.0.113.1"))
    assert await expect_close(spoofed) == 1013
    assert proxied.registry.connections_from("203.0.113.1") == 1
    # Without trusted proxies the header is ignored: both count as the TCP peer, 127.0.0.1.
    first, _ = await connect(http, ws_url(direct), headers=via("203.0.113.1"))
    second = await http.ws_connect(ws_url(direct), headers=via("203.0.113.2"))
    assert await expect_close(second) == 1013
    assert direct.registry.connections_from("127.0.0.1") == 1
    for ws in (one, two, first):
        await ws.close()


async def test_an_sse_stream_ends_with_a_typed_error_when_its_token_expires(
    nats_server: NatsServer, start_app: StartApp, http: aiohttp.ClientSession
) -> None:
    app = await start_app(make_gateway(nats_server.url, **JWT))
    assert isinstance(app, GatewayApp)
    short = token("alice", expires_in=2)
    async with http.get(f"{app.http_url}/v1/channels/news/events", headers=bearer(short)) as stream:
        assert stream.status == 200
        events = [event async for event in sse_events(stream)]  # until the gateway ends it
    assert events[0].event == "welcome"
    last = events[-1].json()
    assert (events[-1].event, last["type"], last["code"]) == ("error", "error", "unauthorized")
    await eventually(lambda: app.registry.connections_of("alice") == 0, 5, what="the expired stream released")
    assert app.counters.disconnects["unauthorized"] >= 1


async def _stream_until_it_ends(http: aiohttp.ClientSession, url: str, jwt: str, name: str) -> list[bytes]:
    method, path, body = stream_requests(jwt)[name]
    async with http.request(method, f"{url}{path}", json=body, headers=bearer(jwt)) as response:
        assert response.status == 200, (name, await response.text())
        return [line.rstrip(b"\n") async for line in response.content if line.strip()]


async def test_a_run_stream_and_every_dialect_stream_end_at_token_expiry_with_their_typed_error(
    nats_server: NatsServer, mock: OpenAIMock, prefix: str, tmp_path: Path, start_app: StartApp,
    http: aiohttp.ClientSession
) -> None:
    url = await start_gateway(nats_server, mock, prefix, tmp_path, start_app, **JWT)
    names = list(stream_requests("x"))
    for _ in names:
        mock.enqueue(SLOW)
    short = token("alice", expires_in=4)
    ended = await asyncio.wait_for(asyncio.gather(*(_stream_until_it_ends(http, url, short, n) for n in names)), 30)
    streams = dict(zip(names, ended, strict=True))
    assert streams["runs"][-2:] == [b"event: error", b'data: {"type":"error","code":"unauthorized","message":'
                                    b'"token expired: the stream ends; authenticate again and resume"}']
    chunk = json.loads(streams["chat-completions"][-1].removeprefix(b"data: "))
    assert chunk["error"]["code"] == "unauthorized"
    assert streams["responses"][-2] == b"event: error"
    assert json.loads(streams["responses"][-1].removeprefix(b"data: "))["code"] == "unauthorized"
    assert streams["ai-sdk"][-1] == b"data: [DONE]"
    assert json.loads(streams["ai-sdk"][-2].removeprefix(b"data: "))["type"] == "error"
    last = json.loads(streams["ag-ui"][-1].removeprefix(b"data: "))
    assert (last["type"], last["code"]) == ("RUN_ERROR", "unauthorized")
    # The Chat Completions run cannot be resumed by anyone, so it was cancelled with its stream.
    run_id = json.loads(streams["chat-completions"][0].removeprefix(b"data: "))["id"].removeprefix("chatcmpl-")
    fresh = bearer(token("alice"))

    async def cancelled() -> bool:
        async with http.get(f"{url}/v1/runs/{run_id}", headers=fresh) as status:
            return (await status.json()).get("status") == "cancelled"

    await eventually(cancelled, 15, what="the chat completion's run cancelled at expiry")


def test_a_trusted_proxy_that_is_no_address_stops_the_gateway_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_TRUSTED_PROXIES"):
        GatewaySettings.from_env({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})
    settings = GatewaySettings.from_env({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, [::1]",
                                         "GATEWAY_MAX_CONNECTIONS_PER_ADDRESS": "0"})
    assert (settings.trusted_proxies, settings.max_connections_per_address) == (("10.0.0.0/8", "[::1]"), 0)
