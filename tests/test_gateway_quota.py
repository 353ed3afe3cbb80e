"""Per-identity limits: rates (a bucket per subject, refilled evenly) and connections per identity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from services.gateway import GatewayApp
from services.gateway.errors import IdentityRateLimited
from services.gateway.quota import IdentityRate
from shared.devstack.servers import NatsServer
from shared.identity import Identity
from shared.service.app import App
from tests.support.gateway import SECRET, connect, expect_close, make_gateway, request, token, ws_url
from tests.support.waiting import eventually

ALICE, BOB = Identity.from_claims({"sub": "alice"}), Identity.from_claims({"sub": "bob"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_identity_gets_its_rate_per_minute_and_then_a_typed_error_with_retry_after() -> None:
    clock = Clock()
    rate = IdentityRate(3, what="runs", setting="GATEWAY_RUNS_PER_MINUTE", clock=clock)
    for _ in range(3):
        rate.take(ALICE)
    with pytest.raises(IdentityRateLimited, match="GATEWAY_RUNS_PER_MINUTE") as limited:
        rate.take(ALICE)
    assert limited.value.to_wire().code == "rate_limited" and limited.value.retry_after == pytest.approx(20.0)
    rate.take(BOB)  # another identity has its own bucket
    clock.now = 20.0  # one more refilled
    rate.take(ALICE)
    with pytest.raises(IdentityRateLimited):
        rate.take(ALICE)


def test_anonymous_callers_and_a_zero_rate_are_not_limited() -> None:
    rate = IdentityRate(1, what="runs", setting="X", clock=Clock())
    for _ in range(5):
        rate.take(Identity.anonymous())
    off = IdentityRate(0, what="runs", setting="X", clock=Clock())
    for _ in range(5):
        off.take(ALICE)


def test_the_buckets_kept_are_bounded() -> None:
    rate = IdentityRate(1, what="rooms", setting="X", max_identities=2, clock=Clock())
    for name in ("a", "b", "c"):
        rate.take(Identity.from_claims({"sub": name}))
    assert list(rate._buckets) == ["b", "c"]


async def test_one_identity_holds_at_most_its_limit_of_connections_and_others_are_not_affected(
    nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
) -> None:
    app = await start_app(make_gateway(nats_server.url, GATEWAY_AUTH_MODE="jwt", GATEWAY_JWT_SECRET=SECRET,
                                       GATEWAY_MAX_CONNECTIONS_PER_IDENTITY="2"))
    assert isinstance(app, GatewayApp)
    alice = ws_url(app, f"?token={token('alice')}")
    async with aiohttp.ClientSession() as session:
        first, _ = await connect(session, alice)
        second, _ = await connect(session, alice)
        third = await session.ws_connect(alice)
        assert await expect_close(third) == 1013
        bob, welcome = await connect(session, ws_url(app, f"?token={token('bob')}"))
        assert welcome["subject"] == "bob"
        anonymous, _ = await connect(session, ws_url(app))  # then authenticates as alice: refused too
        refused = await request(anonymous, {"type": "auth", "token": token("alice")})
        assert (refused["code"], refused["details"]["limit"]) == ("limit_exceeded", 2)
        await first.close()
        await eventually(lambda: app.registry.connections_of("alice") == 1)
        assert (await request(anonymous, {"type": "auth", "token": token("alice")}))["type"] == "authenticated"
        for ws in (second, bob, anonymous):
            await ws.close()
