"""Secure by default: no anonymous gateway beyond loopback without an opt-in, JWTs that expire, strong secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import jwt
import pytest

from services.gateway import GatewayApp, GatewaySettings
from services.gateway.settings import is_loopback
from shared.devstack.servers import NatsServer
from shared.errors import SettingsError
from shared.service.app import App
from tests.support.env import ROOT
from tests.support.gateway import SECRET, connect, make_gateway, request, ws_url


def test_the_gateway_started_on_every_address_with_no_auth_settings_exits_with_a_one_line_reason() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "WEBSOCKET_"))}
    env.update(WEBSOCKET_HOST="0.0.0.0", WEBSOCKET_PORT="0", NATS_URL="nats://127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "services.gateway"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "GATEWAY_AUTH_MODE" in lines[0] and "GATEWAY_ALLOW_ANONYMOUS" in lines[0]


def test_anonymous_access_beyond_loopback_needs_the_explicit_opt_in() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_AUTH_MODE"):
        GatewayApp(GatewaySettings.from_env({"WEBSOCKET_HOST": "0.0.0.0"}))
    opened = GatewaySettings.from_env({"WEBSOCKET_HOST": "0.0.0.0", "GATEWAY_ALLOW_ANONYMOUS": "true"})
    opened.check_exposure()
    assert opened.anonymous_exposed and opened.allow_anonymous
    GatewaySettings.from_env({"WEBSOCKET_HOST": "127.0.0.1"}).check_exposure()
    GatewaySettings.from_env({"WEBSOCKET_HOST": "0.0.0.0", "GATEWAY_AUTH_MODE": "token",
                              "GATEWAY_STATIC_TOKENS": "t1:alice"}).check_exposure()
    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost", "0.0.0.0", "10.0.0.1", "::")] \
        == [True, True, True, True, False, False, False]


def test_a_short_hs256_secret_stops_the_gateway_and_never_shows_in_the_error() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_JWT_MIN_SECRET_BYTES") as short:
        GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "jwt", "GATEWAY_JWT_SECRET": "abc"})
    assert "abc" not in str(short.value)
    GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "jwt", "GATEWAY_JWT_SECRET": "abc",
                              "GATEWAY_JWT_MIN_SECRET_BYTES": "3"})


async def test_a_jwt_must_expire_and_live_no_longer_than_the_configured_lifetime(
    nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                                       GATEWAY_JWT_MAX_LIFETIME="3600"))
    assert isinstance(app, GatewayApp)
    now = int(time.time())
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))
        for claims, reason in [({"sub": "alice"}, "exp"),
                               ({"sub": "alice", "iat": now, "exp": now + 7200}, "GATEWAY_JWT_MAX_LIFETIME"),
                               ({"sub": "alice", "exp": now + 86400 * 365}, "GATEWAY_JWT_MAX_LIFETIME")]:
            error = await request(ws, {"type": "auth", "token": jwt.encode(claims, SECRET, algorithm="HS256")})
            assert (error["code"], reason in error["message"]) == ("unauthorized", True), error
        good = jwt.encode({"sub": "alice", "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")
        assert (await request(ws, {"type": "auth", "token": good}))["type"] == "authenticated"
        await ws.close()


async def test_an_anonymous_gateway_on_loopback_serves_only_loopback_host_names(
    nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
) -> None:
    """A page elsewhere that rebinds its own name to 127.0.0.1 sends its name as Host: refused."""
    app = await start_app(make_gateway(nats_server.url))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{app.http_url}/v1/stats", headers={"Host": "attacker.example:8080"}) as resp:
            assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
        async with session.get(f"{app.http_url}/v1/stats") as resp:  # Host: 127.0.0.1:<port>
            assert resp.status == 200
        port = app.http_url.rsplit(":", 1)[1]
        async with session.get(f"{app.http_url}/v1/stats", headers={"Host": f"localhost:{port}"}) as resp:
            assert resp.status == 200
    opened = GatewaySettings.from_env({"WEBSOCKET_HOST": "127.0.0.1", "GATEWAY_ALLOWED_HOSTS": "*.example.com"})
    assert opened.host_allow_list == ("*.example.com",)
    with_auth = GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "token", "GATEWAY_STATIC_TOKENS": "t:a"})
    assert with_auth.host_allow_list == ()
