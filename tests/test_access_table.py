"""Every gateway route and every WebSocket message type has an access decision in ``shared.access``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from proto.gateway import ClientMessage
from services.gateway import GatewayApp
from shared import access
from shared.devstack.servers import NatsServer
from shared.service.app import App
from tests.support.gateway import make_gateway


def message_tags() -> set[str]:
    return {member.__struct_config__.tag for member in ClientMessage.__args__}


async def test_every_route_of_a_started_gateway_has_an_access_rule_and_every_rule_a_route(
    nats_server: NatsServer, start_app: Callable[[App], Awaitable[App]]
) -> None:
    gateway = await start_app(make_gateway(nats_server.url))
    assert isinstance(gateway, GatewayApp)
    routes = {(r.method, r.resource.canonical) for r in gateway.http_app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    assert {route for route in routes if access.route_access(*route) is None} == set(), "routes without a rule"
    assert set(access.ROUTES) - routes == set(), "rules for routes that do not exist"


def test_every_websocket_message_type_has_an_access_rule_and_every_rule_a_type() -> None:
    assert message_tags() - access.MESSAGES.keys() == set(), "a WebSocket message without an access rule"
    assert access.MESSAGES.keys() - message_tags() == set(), "an access rule for a message that does not exist"
