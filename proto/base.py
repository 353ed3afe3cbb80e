"""The frozen, tagged base every wire message derives from."""

from __future__ import annotations

from typing import Annotated

import msgspec


class Message(msgspec.Struct, frozen=True, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every wire message: JSON object tagged by its ``type`` field."""


class ClientRequest(Message, frozen=True, kw_only=True):
    """Base of every client-to-gateway message: the optional ``id`` comes back as ``ref`` in its answer."""

    id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
