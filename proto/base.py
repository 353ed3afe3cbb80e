"""The frozen, tagged base every wire message derives from."""

from __future__ import annotations

import msgspec


class Message(msgspec.Struct, frozen=True, tag_field="type", kw_only=True, omit_defaults=True):
    """Base of every wire message: JSON object tagged by its ``type`` field."""
