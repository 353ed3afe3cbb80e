"""How deeply a JSON document nests, checked before it is decoded (deep nesting exhausts the decoder's stack)."""

from __future__ import annotations

from typing import Final

from shared.errors import BadRequestError

__all__ = ["DEFAULT_MAX_DEPTH", "JsonTooDeepError", "check_json_depth", "json_depth"]

DEFAULT_MAX_DEPTH: Final = 64
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")
_QUOTE: Final = ord('"')
_BACKSLASH: Final = ord("\\")


JsonTooDeepError = BadRequestError  # a JSON document nested deeper than the configured limit


def json_depth(raw: bytes, stop_after: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (brackets inside strings do not count);
    stops counting once past ``stop_after``."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    return deepest
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def check_json_depth(raw: bytes, limit: int = DEFAULT_MAX_DEPTH, *, setting: str = "GATEWAY_MAX_JSON_DEPTH") -> None:
    """Raise :class:`JsonTooDeepError` when ``raw`` nests deeper than ``limit``; 0 turns the check off."""
    if limit <= 0 or raw.count(b"[") + raw.count(b"{") <= limit:
        return  # cannot be deeper than its number of brackets: the common case costs two C-speed counts
    if json_depth(raw, stop_after=limit) > limit:
        raise BadRequestError(f"JSON nested deeper than {limit} levels ({setting})",
                              details={"limit": limit, "setting": setting})
