"""Turning credentials into an :class:`Identity`: none (dev), JWT (HS256 / RS256) or static tokens; origins."""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from services.gateway.errors import authentication_failed, origin_not_allowed
from services.gateway.settings import GatewaySettings, token_digest
from shared.identity import ADMIN_ROLE, AccessPolicy, Identity, compile_pattern


class Authenticator:
    """Verifies tokens per ``GATEWAY_AUTH_MODE``; every failure raises :class:`AuthenticationFailed`."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.mode = settings.auth_mode
        self.policy = AccessPolicy({"channel": settings.restricted_channels})
        self._static: Mapping[str, Mapping[str, object]] = settings.static_tokens
        self._keys: list[tuple[str | bytes, str]] = []
        if settings.jwt_secret:
            self._keys.append((settings.jwt_secret, "HS256"))
        if settings.jwt_public_key:
            self._keys.append((settings.jwt_public_key, "RS256"))
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._leeway = settings.jwt_leeway
        self._max_lifetime = settings.jwt_max_lifetime

    @property
    def required(self) -> bool:
        return self.mode != "none"

    def anonymous(self) -> Identity:
        """Without auth every caller is the operator of a loopback (or explicitly opened) gateway: the admin
        role; with auth, the not-yet-authenticated party, who may do nothing but authenticate."""
        return Identity.anonymous(self.policy, roles=(ADMIN_ROLE,) if self.mode == "none" else ())

    def verify(self, token: str) -> Identity:
        """The identity a token stands for; in ``none`` mode every token (or none) is anonymous."""
        if self.mode == "none":
            return self.anonymous()
        if not token:
            raise authentication_failed("empty token")
        if self.mode == "token":
            claims = self._static.get(token_digest(token))
            if claims is None:
                raise authentication_failed("unknown token")
            return Identity.from_claims(claims, self.policy)
        return Identity.from_claims(self._decode_jwt(token), self.policy)

    def _decode_jwt(self, token: str) -> dict[str, object]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise authentication_failed(f"malformed token ({exc})") from None
        algorithm = header.get("alg")
        for key, alg in self._keys:
            if alg != algorithm:
                continue
            try:
                claims: dict[str, object] = jwt.decode(
                    token, key, algorithms=[alg], audience=self._audience, issuer=self._issuer,
                    leeway=self._leeway, options={"require": ["sub", "exp"]},
                )
            except jwt.ExpiredSignatureError:
                raise authentication_failed("token expired") from None
            except jwt.PyJWTError as exc:
                raise authentication_failed(str(exc)) from None
            self._check_lifetime(claims)
            return claims
        accepted = ", ".join(alg for _, alg in self._keys)
        raise authentication_failed(f"token algorithm {algorithm!r} is not accepted (accepted: {accepted})")

    def _check_lifetime(self, claims: dict[str, object]) -> None:
        """A token may live at most GATEWAY_JWT_MAX_LIFETIME seconds from ``iat`` (or from now, without one)."""
        exp, iat = claims.get("exp"), claims.get("iat")
        issued = float(iat) if isinstance(iat, int | float) and not isinstance(iat, bool) else time.time()
        if isinstance(exp, int | float) and float(exp) - issued > self._max_lifetime + self._leeway:
            raise authentication_failed(f"token lifetime over {self._max_lifetime:.0f}s (GATEWAY_JWT_MAX_LIFETIME)")

    def from_request(self, request: web.Request) -> Identity | None:
        """The identity of an HTTP request's ``Authorization: Bearer`` header or ``?token=``; None if neither."""
        token = bearer_token(request)
        if token is None:
            return None
        return self.verify(token)

    def require(self, request: web.Request) -> Identity:
        """Like :meth:`from_request`, but a missing token fails when auth is required."""
        identity = self.from_request(request)
        if identity is not None:
            return identity
        if self.required:
            raise authentication_failed("no token (send 'Authorization: Bearer <token>' or '?token=')")
        return self.anonymous()


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = request.query.get("token")
    return token if token else None


class OriginCheck:
    """Cross-site WebSocket hijacking guard: a browser's ``Origin`` must be the gateway's own or allowed.

    ``GATEWAY_ALLOWED_ORIGINS``: empty allows the same origin only (and clients that send no ``Origin``,
    which are not browsers); ``*`` allows any; entries are origins, ``*`` globbing (``https://*.example.com``).
    """

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.any = "*" in allowed
        self.allowed = tuple(a.rstrip("/").lower() for a in allowed if a != "*")

    def check(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is None or self.any:
            return
        normalized = origin.rstrip("/").lower()
        parts = urlsplit(normalized)
        if parts.netloc and parts.netloc == request.host.lower():
            return
        for pattern in self.allowed:
            compiled = compile_pattern(pattern)
            if compiled is not None and compiled.fullmatch(normalized):
                return
        raise origin_not_allowed(origin)
