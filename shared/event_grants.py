"""Which event patterns an identity may see: its ``events`` grant must cover every event a pattern can match.

Grants and restrictions are the gateway's globs (``*`` any run of characters, ``?`` one character, ``{sub}``
the identity's subject). A listener pattern is a set of events (``user.*``: one more token; ``user.**``: one
or more), so it is allowed only when *every* event it can match is allowed: with a grant, some grant glob
must match all of them; without one, no restricted glob may match any of them.
"""

from __future__ import annotations

import functools
import re

from shared.identity import Identity

# Stand-ins for a pattern's wildcard tokens; they cannot occur in checked names, so only a glob ``*`` matches them.
_ONE_TOKEN = "\x00"
_TAIL = "\x01"


def _with_stand_ins(pattern: str) -> str:
    """``user.*.x`` -> ``user.\\x00.x``; ``user.**`` / ``user.>`` -> ``user.\\x01`` (after NATS mapping)."""
    return ".".join(_ONE_TOKEN if t == "*" else _TAIL if t == ">" else t for t in pattern.split("."))


@functools.lru_cache(maxsize=4096)
def _cover_regex(glob: str, subject: str | None) -> re.Pattern[str] | None:
    """The glob as a regex in which only ``*`` can stand for a wildcard token (``?`` is one real character)."""
    parts: list[str] = []
    for i, piece in enumerate(glob.split("{sub}")):
        if i:
            if subject is None:
                return None
            parts.append(re.escape(subject))
        for ch in piece:
            parts.append(".*" if ch == "*" else f"[^{_ONE_TOKEN}{_TAIL}]" if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def covers(glob: str, pattern: str, subject: str | None = None) -> bool:
    """True when ``glob`` matches every event name the NATS-style ``pattern`` can match."""
    regex = _cover_regex(glob, subject)
    return regex is not None and regex.fullmatch(_with_stand_ins(pattern)) is not None


# Atoms of both kinds of pattern, for the intersection test: (kind, value).
_ANY, _NON_DOT = "any", "non_dot"


def _glob_atoms(glob: str) -> list[tuple[str, str]]:
    return [("star", _ANY) if ch == "*" else ("one", _ANY) if ch == "?" else ("lit", ch) for ch in glob]


def _pattern_atoms(pattern: str) -> list[tuple[str, str]]:
    atoms: list[tuple[str, str]] = []
    for i, token in enumerate(pattern.split(".")):
        if i:
            atoms.append(("lit", "."))
        if token == "*":  # one or more characters of one token
            atoms += [("one", _NON_DOT), ("star", _NON_DOT)]
        elif token == ">":  # one or more characters, dots included
            atoms += [("one", _ANY), ("star", _ANY)]
        else:
            atoms += [("lit", ch) for ch in token]
    return atoms


def _accepts(charset: str, ch: str) -> bool:
    return charset == _ANY or ch != "."


def _single(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Can two one-character atoms match the same character?"""
    if a[0] == "lit" and b[0] == "lit":
        return a[1] == b[1]
    if a[0] == "lit":
        return _accepts(b[1], a[1])
    if b[0] == "lit":
        return _accepts(a[1], b[1])
    return True  # two character classes always share a letter


def intersects(glob: str, pattern: str) -> bool:
    """True when some event name matches both ``glob`` and the NATS-style ``pattern``."""
    if "{sub}" in glob:
        return False  # as in AccessPolicy: a restriction naming the subject applies to no one here
    a, b = _glob_atoms(glob), _pattern_atoms(pattern)

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i][0] == "star":
            if match(i + 1, j):
                return True
            if j < len(b) and b[j][0] != "star" and _single(("one", a[i][1]), b[j]) and match(i, j + 1):
                return True
        if j < len(b) and b[j][0] == "star":
            if match(i, j + 1):
                return True
            if i < len(a) and a[i][0] != "star" and _single(a[i], ("one", b[j][1])) and match(i + 1, j):
                return True
        if i < len(a) and j < len(b) and a[i][0] != "star" and b[j][0] != "star" and _single(a[i], b[j]):
            return match(i + 1, j + 1)
        return False

    return match(0, 0)


def may_see(identity: Identity, pattern: str, restricted: tuple[str, ...]) -> bool:
    """May ``identity`` receive every event matching ``pattern`` (NATS form: ``*`` and a tail ``>``)?"""
    granted = identity.grants.get("event")
    if granted is not None:
        return any(covers(glob, pattern, identity.subject) for glob in granted)
    return not any(intersects(glob, pattern) for glob in restricted)
