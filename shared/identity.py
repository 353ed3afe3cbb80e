"""Who a caller is and what it may use: claims from a JWT or a static token, checked by ``may``."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

ResourceKind = Literal["channel", "run", "event", "room", "job", "tool", "model", "approve"]

# The claim that lists the name patterns of each kind an identity may use.
GRANT_CLAIMS: Final[dict[str, str]] = {
    "channel": "channels",
    "run": "runs",
    "event": "events",
    "room": "rooms",
    "job": "jobs",
    "tool": "tools",
    "model": "models",
    "approve": "approvals",  # agents whose runs' tool calls the identity may approve or reject
}
# The role that may manage other identities' resources, dead letters and every queue (``roles`` claim).
ADMIN_ROLE: Final = "admin"


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str, subject: str | None = None) -> re.Pattern[str] | None:
    """A glob: ``*`` is any run of characters, ``?`` one character, ``{sub}`` the subject taken literally
    (so a subject holding ``*`` is no wildcard); everything else is literal. None: needs a missing subject."""
    parts = []
    for i, piece in enumerate(pattern.split("{sub}")):
        if i:
            if subject is None:
                return None
            parts.append(re.escape(subject))
        for ch in piece:
            if ch == "*":
                parts.append(".*")
            elif ch == "?":
                parts.append(".")
            else:
                parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def matches(patterns: tuple[str, ...], name: str, subject: str | None = None) -> bool:
    for pattern in patterns:
        compiled = compile_pattern(pattern, subject)
        if compiled is not None and compiled.fullmatch(name):
            return True
    return False


class AccessPolicy:
    """Deployment-wide rules: which names are restricted (usable only by identities granted them)."""

    __slots__ = ("restricted",)

    def __init__(self, restricted: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.restricted: dict[str, tuple[str, ...]] = dict(restricted or {})

    def is_restricted(self, kind: str, name: str) -> bool:
        patterns = self.restricted.get(kind)
        return patterns is not None and matches(patterns, name)


OPEN_POLICY = AccessPolicy()


class Identity:
    """The authenticated (or anonymous) party behind a connection or HTTP request.

    ``may(kind, name)``: when the identity carries a grant claim for ``kind`` (``channels``, ``runs``,
    ``events``, ``rooms``, ``jobs``, ``tools``, ``models``: lists of glob patterns, ``{sub}`` standing for the
    subject), the name must match one of them; otherwise anything not restricted by the policy is allowed.
    Ownership and the admin role are :mod:`shared.access`'s business, not this class's.
    """

    __slots__ = ("claims", "expires_at", "grants", "name", "policy", "roles", "subject")

    def __init__(
        self,
        subject: str | None,
        *,
        roles: tuple[str, ...] = (),
        grants: Mapping[str, tuple[str, ...]] | None = None,
        claims: Mapping[str, Any] | None = None,
        expires_at: float | None = None,
        name: str | None = None,
        policy: AccessPolicy = OPEN_POLICY,
    ) -> None:
        self.subject = subject
        self.roles = roles
        self.grants: dict[str, tuple[str, ...]] = dict(grants or {})
        self.claims: Mapping[str, Any] = claims or {}
        self.expires_at = expires_at
        self.name = name
        self.policy = policy

    @classmethod
    def anonymous(cls, policy: AccessPolicy = OPEN_POLICY, *, roles: tuple[str, ...] = ()) -> Identity:
        return cls(None, policy=policy, roles=roles)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], policy: AccessPolicy = OPEN_POLICY) -> Identity:
        """Build from JWT / static-token claims; malformed grant claims grant nothing (never everything)."""
        subject = claims.get("sub")
        subject = subject if isinstance(subject, str) and subject else None
        grants: dict[str, tuple[str, ...]] = {}
        for kind, claim in GRANT_CLAIMS.items():
            if claim in claims:
                grants[kind] = _strings(claims[claim])
        exp = claims.get("exp")
        name = claims.get("name")
        return cls(
            subject,
            roles=_strings(claims.get("roles")),
            grants=grants,
            claims=dict(claims),
            expires_at=float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None,
            name=name if isinstance(name, str) else None,
            policy=policy,
        )

    @property
    def authenticated(self) -> bool:
        return self.subject is not None

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def may(self, kind: ResourceKind | str, name: str) -> bool:
        granted = self.grants.get(kind)
        if granted is not None:
            return matches(granted, name, self.subject)
        return not self.policy.is_restricted(kind, name)

    def __repr__(self) -> str:
        return f"Identity(subject={self.subject!r}, roles={self.roles!r}, grants={self.grants!r})"


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()
