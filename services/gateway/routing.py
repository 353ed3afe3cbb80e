"""The one table from client message type to its handler, built from the core's and each extension's ``handles``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

import msgspec

from proto.base import ClientRequest
from services.gateway.extension import Handler, Handlers


class DuplicateHandler(ValueError):
    """Two parts of the gateway claim the same client message type: refused at start-up."""

    def __init__(self, message_type: type[ClientRequest], first: str, second: str) -> None:
        super().__init__(f"client message {_tag(message_type)!r} ({message_type.__qualname__}) is handled "
                         f"by both {first} and {second}")
        self.message_type = message_type


class MessageTable:
    """Which handler (and which named part: ``core``, ``runs`` ...) takes each client message type."""

    def __init__(self, parts: Iterable[tuple[str, Handlers]]) -> None:
        self.handlers: dict[type[ClientRequest], Handler] = {}
        self.owners: dict[type[ClientRequest], str] = {}
        for owner, handles in parts:
            for message_type, handler in handles.items():
                if message_type in self.owners:
                    raise DuplicateHandler(message_type, self.owners[message_type], owner)
                self.handlers[message_type] = handler
                self.owners[message_type] = owner
        self.tags = frozenset(_tag(t) for t in self.handlers)
        # Exactly the registered types decode; anything else is an application message or unknown.
        union: Any = Union[tuple(self.handlers)]  # noqa: UP007 (a union built at run time)
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(union)

    def handler(self, message: ClientRequest) -> Handler:
        return self.handlers[type(message)]


def _tag(message_type: type[ClientRequest]) -> str:
    return str(message_type.__struct_config__.tag)
