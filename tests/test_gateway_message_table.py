"""docs/architecture.md's client-message table: every ClientMessage type, and the handler the gateway registers."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from proto.gateway import ClientMessage
from services.gateway import GatewayApp
from tests.support.gateway import make_gateway

DOC = Path(__file__).parent.parent / "docs" / "architecture.md"
HEADING = "## Client messages: where each type is defined and which module handles it"


def documented_rows() -> dict[str, list[str]]:
    """``type`` -> [defined in, Struct, handled in, handler], from the doc's table under HEADING."""
    section = DOC.read_text().split(HEADING, 1)[1].split("\n## ", 1)[0]
    body = section.split("|---|---|---|---|---|\n", 1)[1]
    rows: dict[str, list[str]] = {}
    for line in body.splitlines():
        if not line.startswith("|"):
            break
        tag, *cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        assert tag not in rows, f"{tag} is listed twice"
        rows[tag] = cells
    return rows


@pytest.fixture
def gateway() -> GatewayApp:
    return make_gateway("nats://127.0.0.1:1")  # never connected: the table exists once the app is built


def test_the_doc_lists_every_client_message_type_once_with_where_its_struct_is_defined() -> None:
    rows = documented_rows()
    members = typing.get_args(ClientMessage)
    assert sorted(rows) == sorted(str(m.__struct_config__.tag) for m in members)
    for member in members:
        defined_in, struct, _, _ = rows[str(member.__struct_config__.tag)]
        assert (defined_in, struct) == (member.__module__, member.__name__)


def test_the_doc_names_the_module_and_handler_the_gateway_registers_for_each_type(gateway: GatewayApp) -> None:
    rows = documented_rows()
    registered = {str(t.__struct_config__.tag): h for t, h in gateway.messages.handlers.items()}
    assert sorted(registered) == sorted(rows)
    for tag, handler in registered.items():
        assert rows[tag][2:] == [handler.__module__, handler.__qualname__], tag
