"""Auth: JWT (HS256, RS256) and static tokens, claims deciding channels, restricted channels, origins."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway import GatewayApp, GatewaySettings, Identity
from shared.devstack.servers import NatsServer
from shared.errors import SettingsError
from shared.identity import AccessPolicy
from shared.service.app import App
from tests.support.gateway import SECRET, connect, expect_close, make_gateway, receive, request, token, ws_url

StartApp = Callable[[App], Awaitable[App]]


@pytest.fixture
async def jwt_gateway(nats_server: NatsServer, start_app: StartApp) -> GatewayApp:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                                       GATEWAY_RESTRICTED_CHANNELS="admin-*,ops", WEBSOCKET_AUTH_TIMEOUT="0.5"))
    assert isinstance(app, GatewayApp)
    return app


async def test_unauthenticated_connections_may_only_authenticate_or_ping(jwt_gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, welcome = await connect(session, ws_url(jwt_gateway))
        assert welcome["auth_required"] is True
        assert (await request(ws, {"type": "subscribe", "channel": "general"}))["code"] == "unauthorized"
        assert (await request(ws, {"type": "ping"}))["type"] == "pong"
        reply = await request(ws, {"type": "auth", "token": token("alice", roles=["staff"])})
        assert (reply["type"], reply["subject"], reply["roles"]) == ("authenticated", "alice", ["staff"])
        assert (await request(ws, {"type": "subscribe", "channel": "general"}))["type"] == "ack"
        await ws.close()


async def test_bad_tokens_are_refused_with_a_reason(jwt_gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(jwt_gateway))
        for bad, reason in [
            ("not-a-jwt", "malformed"),
            (token("alice", secret="another-secret-that-is-long-enough-too"), "Signature"),
            (token("alice", expires_in=-60), "expired"),
            (jwt.encode({"exp": 9999999999}, SECRET, algorithm="HS256"), "sub"),
        ]:
            error = await request(ws, {"type": "auth", "token": bad})
            assert error["code"] == "unauthorized", error
            assert reason in error["message"], error
        await ws.close()


async def test_claims_decide_channels_and_restricted_channels_refuse_everyone_else(jwt_gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        plain, _ = await connect(session, ws_url(jwt_gateway, f"?token={token('bob')}"))
        error = await request(plain, {"type": "subscribe", "channel": "admin-room"})
        assert (error["code"], error["details"]) == ("forbidden", {"kind": "channel", "name": "admin-room"})
        assert (await request(plain, {"type": "publish", "channel": "ops", "data": 1}))["code"] == "forbidden"
        assert (await request(plain, {"type": "subscribe", "channel": "lobby"}))["type"] == "ack"

        admin_token = token("root", channels=["admin-*", "user-{sub}"])
        admin, welcome = await connect(session, ws_url(jwt_gateway),
                                       headers={"Authorization": f"Bearer {admin_token}"})
        assert welcome["subject"] == "root", "a token on the upgrade request authenticates at once"
        assert (await request(admin, {"type": "subscribe", "channel": "admin-room"}))["type"] == "ack"
        assert (await request(admin, {"type": "subscribe", "channel": "user-root"}))["type"] == "ack"
        assert (await request(admin, {"type": "subscribe", "channel": "user-bob"}))["code"] == "forbidden"
        assert (await request(admin, {"type": "subscribe", "channel": "lobby"}))["code"] == "forbidden", \
            "an explicit grant list is all an identity may use"
        await plain.close()
        await admin.close()


async def test_a_bad_token_on_the_upgrade_gets_an_error_and_close_4001(jwt_gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(jwt_gateway, "?token=garbage"))
        assert (await receive(ws))["code"] == "unauthorized"
        assert await expect_close(ws) == 4001


async def test_a_connection_that_never_authenticates_is_closed(jwt_gateway: GatewayApp) -> None:
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(jwt_gateway))
        assert await expect_close(ws, timeout=3) == 4001
    assert jwt_gateway.counters.disconnects["unauthorized"] >= 1


async def test_rs256_tokens_verify_with_the_public_key(nats_server: NatsServer, start_app: StartApp) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt",
                                       GATEWAY_JWT_PUBLIC_KEY=public_pem.replace("\n", "\\n")))
    signed = jwt.encode({"sub": "carol", "channels": ["*"], "exp": int(time.time()) + 600}, key, algorithm="RS256")
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))  # type: ignore[arg-type]
        assert (await request(ws, {"type": "auth", "token": signed}))["subject"] == "carol"
        hs = token("mallory")
        error = await request(ws, {"type": "auth", "token": hs})
        assert error["code"] == "unauthorized" and "HS256" in error["message"], "no algorithm confusion"
        await ws.close()


async def test_static_tokens_carry_their_own_claims(nats_server: NatsServer, start_app: StartApp) -> None:
    tokens = {"tok-a": {"sub": "svc-a", "channels": ["jobs-*"]}, "tok-b": {"sub": "svc-b"}}
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="token",
                                       GATEWAY_STATIC_TOKENS=json.dumps(tokens)))
    async with aiohttp.ClientSession() as session:
        ws, _ = await connect(session, ws_url(app))  # type: ignore[arg-type]
        assert (await request(ws, {"type": "auth", "token": "nope"}))["code"] == "unauthorized"
        assert (await request(ws, {"type": "auth", "token": "tok-a"}))["subject"] == "svc-a"
        assert (await request(ws, {"type": "subscribe", "channel": "jobs-1"}))["type"] == "ack"
        assert (await request(ws, {"type": "subscribe", "channel": "chat"}))["code"] == "forbidden"
        error = await request(ws, {"type": "auth", "token": "tok-b"})
        assert error["code"] == "unauthorized", "a connection keeps its subject"
        await ws.close()


async def test_foreign_origins_are_refused_before_the_upgrade(nats_server: NatsServer, start_app: StartApp) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_ALLOWED_ORIGINS="https://*.example.com"))
    assert isinstance(app, GatewayApp)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(app), headers={"Origin": "https://evil.test"})
        assert refused.value.status == 403
        for origin in ("https://chat.example.com", app.http_url):
            ws, _ = await connect(session, ws_url(app), headers={"Origin": origin})
            await ws.close()
        ws, _ = await connect(session, ws_url(app))  # no Origin: not a browser
        await ws.close()
    assert app.counters.refused["origin"] == 1


def test_identity_may_follows_grants_subject_patterns_and_restrictions() -> None:
    policy = AccessPolicy({"channel": ("secret-*",)})
    anyone = Identity.anonymous(policy)
    assert anyone.may("channel", "general") and not anyone.may("channel", "secret-plans")
    granted = Identity.from_claims({"sub": "u*", "channels": ["secret-*", "home-{sub}"], "runs": []}, policy)
    assert granted.may("channel", "secret-plans")
    assert granted.may("channel", "home-u*")
    assert not granted.may("channel", "home-uX"), "a subject is matched literally, never as a wildcard"
    assert not granted.may("run", "r1"), "an empty grant list grants nothing"
    assert granted.may("room", "lobby"), "kinds without a grant claim fall back to the policy"
    odd = Identity.from_claims({"sub": "x", "channels": "a*"}, policy)
    assert odd.may("channel", "abc") and not odd.may("channel", "b")


def test_auth_settings_are_checked_when_the_gateway_starts() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_JWT_SECRET"):
        GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "jwt"})
    with pytest.raises(SettingsError, match="GATEWAY_STATIC_TOKENS"):
        GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "token"})
    with pytest.raises(SettingsError, match="token:subject") as bad:
        GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "token", "GATEWAY_STATIC_TOKENS": "secret-without-subject"})
    assert "secret-without-subject" not in str(bad.value), "a token never shows up in an error"
    settings = GatewaySettings.from_env({"GATEWAY_AUTH_MODE": "token", "GATEWAY_STATIC_TOKENS": "t1:alice,t2:bob"})
    assert len(settings.static_tokens) == 2
