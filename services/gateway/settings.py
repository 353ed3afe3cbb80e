"""Gateway settings from the environment (the seed's ``WEBSOCKET_*`` names, plus ``GATEWAY_*`` for auth)."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.gateway.addresses import parse_networks
from services.gateway.runs_settings import RunRouteSettings
from shared.errors import invalid_setting
from shared.gateway.settings import (
    AUTH_TIMEOUT,
    ENABLE_COMPRESSION,
    ENABLE_SSE,
    HEARTBEAT_INTERVAL,
    HOST,
    MAX_CONNECTIONS,
    PORT,
)
from shared.service.settings import Env, RuntimeSettings

AUTH_MODES = ("none", "jwt", "token")


def token_digest(token: str) -> str:
    """Static tokens are looked up by digest, so comparing them takes the same time whatever they are."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    runtime: RuntimeSettings
    host: str = HOST.default
    port: int = PORT.default
    # Connections.
    max_connections: int = MAX_CONNECTIONS.default
    heartbeat_interval: float = HEARTBEAT_INTERVAL.default  # pings to a quiet connection; 0: none
    pong_timeout: float = 10.0  # a ping unanswered this long means the peer is dead
    auth_timeout: float = AUTH_TIMEOUT.default  # then an unauthenticated connection (jwt/token) is closed
    idle_timeout: float = 300.0  # no client message for this long closes the connection; 0 = never
    close_timeout: float = 5.0  # how long a closing connection may take to flush before it is aborted
    # Compression (permessage-deflate; the gateway never keeps a compressor per connection).
    enable_compression: bool = ENABLE_COMPRESSION.default
    compression_level: int = 1
    compression_threshold: int = 256  # smaller messages go uncompressed
    # Per-connection limits.
    max_message_size: int = 64 * 1024  # bigger messages get a 'too_large' error
    max_frame_size: int = 1024 * 1024  # bigger frames close the connection (1009)
    rate_limit: int = 60  # client messages per minute; 0 = unlimited
    rate_burst: int = 60  # how many may come at once
    max_subscriptions: int = 100
    send_queue_bytes: int = 1024 * 1024  # bytes waiting to be sent before a slow consumer is cut off
    # Auth.
    auth_mode: str = "none"
    jwt_secret: str | None = None
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 5.0
    static_tokens: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # token digest -> claims
    jwt_max_lifetime: float = 86_400.0  # seconds a JWT may live (exp - iat); every JWT must carry exp
    jwt_min_secret_bytes: int = 32  # shorter HS256 secrets stop the gateway at start
    allow_anonymous: bool = False  # auth mode none on a non-loopback address: only with this opt-in
    max_json_depth: int = 64  # deeper JSON (WebSocket or REST) gets a bad_request error; 0 = no limit
    max_connections_per_identity: int = 100  # WebSocket, SSE and run stream connections of one subject here
    max_connections_per_address: int = 1000  # the same, of one client address (anonymous ones included)
    trusted_proxies: tuple[str, ...] = ()  # addresses / CIDRs whose X-Forwarded-For names the client's address
    allowed_hosts: tuple[str, ...] = ()  # Host globs; empty: any (loopback names only when anonymous on loopback)
    allowed_origins: tuple[str, ...] = ()  # empty: same origin (and clients that send no Origin); "*": any
    restricted_channels: tuple[str, ...] = ()  # glob patterns only identities granted them may use
    # Cluster.
    presence_subjects: bool = False  # presence shows members' subjects (else display names and info only)
    presence_timeout: float = 0.5
    peer_interval: float = 5.0
    direct_delivery: bool = True  # skip nats-py's per-message queue and parser (shared.nats.fastpaths)
    ws_fast_path: bool = True  # deflate without context takeover on aiohttp internals (gateway/wsresponse.py)
    # Features.
    enable_sse: bool = ENABLE_SSE.default
    chat_page: bool = True
    runs: RunRouteSettings = field(default_factory=RunRouteSettings)  # GATEWAY_RUN_* (services/gateway/runs.py)

    @property
    def auth_required(self) -> bool:
        return self.auth_mode != "none"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = Env(environ)
        host = HOST.read(env)
        port = PORT.read(env)
        # The gateway serves health and metrics on its own port, beside /ws.
        runtime = dataclasses.replace(RuntimeSettings.from_env(env, default_http_port=port),
                                      http_host=host, http_port=port)
        rate_limit = env.integer("WEBSOCKET_RATE_LIMIT", cls.rate_limit, min=0)
        max_message_size = env.integer("WEBSOCKET_MAX_MESSAGE_SIZE", cls.max_message_size, min=64)
        max_frame_size = env.integer("WEBSOCKET_MAX_FRAME_SIZE", max(cls.max_frame_size, max_message_size),
                                     min=64)
        if max_frame_size < max_message_size:
            raise invalid_setting("WEBSOCKET_MAX_FRAME_SIZE", str(max_frame_size),
                                  f"must be >= WEBSOCKET_MAX_MESSAGE_SIZE ({max_message_size})")
        settings = cls(
            runtime=runtime,
            host=host,
            port=port,
            max_connections=MAX_CONNECTIONS.read(env),
            heartbeat_interval=HEARTBEAT_INTERVAL.read(env),
            pong_timeout=env.number("WEBSOCKET_PONG_TIMEOUT", cls.pong_timeout, min=0.05),
            auth_timeout=AUTH_TIMEOUT.read(env),
            idle_timeout=env.number("WEBSOCKET_IDLE_TIMEOUT", cls.idle_timeout, min=0),
            close_timeout=env.number("WEBSOCKET_CLOSE_TIMEOUT", cls.close_timeout, min=0.05),
            enable_compression=ENABLE_COMPRESSION.read(env),
            compression_level=env.integer("WEBSOCKET_COMPRESSION_LEVEL", cls.compression_level, min=1, max=9),
            compression_threshold=env.integer("WEBSOCKET_COMPRESSION_THRESHOLD", cls.compression_threshold,
                                              min=0),
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            rate_limit=rate_limit,
            rate_burst=env.integer("WEBSOCKET_RATE_BURST", rate_limit or cls.rate_burst, min=1),
            max_subscriptions=env.integer("WEBSOCKET_MAX_SUBSCRIPTIONS", cls.max_subscriptions, min=1),
            send_queue_bytes=env.integer("WEBSOCKET_SEND_QUEUE_BYTES", cls.send_queue_bytes, min=1024),
            auth_mode=env.choice("GATEWAY_AUTH_MODE", cls.auth_mode, AUTH_MODES),
            jwt_secret=env.optional("GATEWAY_JWT_SECRET"),
            jwt_public_key=_public_key(env),
            jwt_audience=env.optional("GATEWAY_JWT_AUDIENCE"),
            jwt_issuer=env.optional("GATEWAY_JWT_ISSUER"),
            jwt_leeway=env.number("GATEWAY_JWT_LEEWAY", cls.jwt_leeway, min=0, max=3600),
            jwt_max_lifetime=env.number("GATEWAY_JWT_MAX_LIFETIME", cls.jwt_max_lifetime, min=1),
            jwt_min_secret_bytes=env.integer("GATEWAY_JWT_MIN_SECRET_BYTES", cls.jwt_min_secret_bytes, min=1),
            allow_anonymous=env.boolean("GATEWAY_ALLOW_ANONYMOUS", cls.allow_anonymous),
            max_json_depth=env.integer("GATEWAY_MAX_JSON_DEPTH", cls.max_json_depth, min=0, max=10_000),
            max_connections_per_identity=env.integer("GATEWAY_MAX_CONNECTIONS_PER_IDENTITY",
                                                     cls.max_connections_per_identity, min=0),
            max_connections_per_address=env.integer("GATEWAY_MAX_CONNECTIONS_PER_ADDRESS",
                                                    cls.max_connections_per_address, min=0),
            trusted_proxies=env.items("GATEWAY_TRUSTED_PROXIES"),
            static_tokens=_static_tokens(env),
            allowed_origins=env.items("GATEWAY_ALLOWED_ORIGINS"),
            allowed_hosts=env.items("GATEWAY_ALLOWED_HOSTS"),
            restricted_channels=env.items("GATEWAY_RESTRICTED_CHANNELS"),
            presence_subjects=env.boolean("GATEWAY_PRESENCE_SUBJECTS", cls.presence_subjects),
            presence_timeout=env.number("GATEWAY_PRESENCE_TIMEOUT", cls.presence_timeout, min=0.01, max=30),
            peer_interval=env.number("GATEWAY_PEER_INTERVAL", cls.peer_interval, min=0.05, max=600),
            direct_delivery=env.boolean("GATEWAY_DIRECT_DELIVERY", cls.direct_delivery),
            ws_fast_path=env.boolean("GATEWAY_WS_FAST_PATH", cls.ws_fast_path),
            enable_sse=ENABLE_SSE.read(env),
            chat_page=env.boolean("GATEWAY_CHAT_PAGE", cls.chat_page),
            runs=RunRouteSettings.from_env(env.environ),
        )
        if settings.auth_mode == "jwt" and not (settings.jwt_secret or settings.jwt_public_key):
            raise invalid_setting("GATEWAY_AUTH_MODE", "jwt", "needs GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY")
        if settings.auth_mode == "token" and not settings.static_tokens:
            raise invalid_setting("GATEWAY_AUTH_MODE", "token", "needs GATEWAY_STATIC_TOKENS")
        parse_networks(settings.trusted_proxies)  # a bad entry stops the gateway here, naming the variable
        secret = settings.jwt_secret
        if secret is not None and len(secret.encode()) < settings.jwt_min_secret_bytes:
            raise invalid_setting("GATEWAY_JWT_SECRET", "<hidden>",
                                  f"{len(secret.encode())} bytes; HS256 needs at least "
                                  f"{settings.jwt_min_secret_bytes} (GATEWAY_JWT_MIN_SECRET_BYTES)")
        return settings

    @property
    def anonymous_exposed(self) -> bool:
        """Anonymous access (auth mode none) served beyond this machine."""
        return self.auth_mode == "none" and not is_loopback(self.host)

    @property
    def host_allow_list(self) -> tuple[str, ...]:
        """The ``Host`` names served: ``GATEWAY_ALLOWED_HOSTS``, or for an anonymous gateway on loopback only the
        loopback names (a page elsewhere that rebinds its own name to 127.0.0.1 is refused); empty: any."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.auth_mode == "none" and is_loopback(self.host):
            return LOOPBACK_HOSTS
        return ()

    def check_exposure(self) -> None:
        """Refuse (when the gateway is built) to serve anonymous clients beyond loopback without the opt-in."""
        if self.anonymous_exposed and not self.allow_anonymous:
            raise invalid_setting("GATEWAY_AUTH_MODE", "none", f"anonymous clients on {self.host!r} (not loopback): "
                                  "set GATEWAY_AUTH_MODE=jwt or token, WEBSOCKET_HOST=127.0.0.1, or "
                                  "GATEWAY_ALLOW_ANONYMOUS=true")


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``; anything else (``0.0.0.0`` included) reaches other machines."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _public_key(env: Env) -> str | None:
    """``GATEWAY_JWT_PUBLIC_KEY``: PEM text (``\\n`` escapes allowed) or the path of a PEM file."""
    value = env.optional("GATEWAY_JWT_PUBLIC_KEY")
    if value is None:
        return None
    if value.startswith("-----BEGIN"):
        return value.replace("\\n", "\n")
    path = Path(value)
    try:
        text = path.read_text()
    except OSError as exc:
        raise invalid_setting("GATEWAY_JWT_PUBLIC_KEY", value,
                              f"not PEM text and not a readable file ({exc})") from None
    if "-----BEGIN" not in text:
        raise invalid_setting("GATEWAY_JWT_PUBLIC_KEY", value, "the file holds no PEM key")
    return text


def _static_tokens(env: Env) -> dict[str, dict[str, Any]]:
    """``GATEWAY_STATIC_TOKENS``: ``token:subject,token2:subject2`` or a JSON object ``{token: {claims}}``."""
    value = env.optional("GATEWAY_STATIC_TOKENS")
    if value is None:
        return {}
    tokens: dict[str, dict[str, Any]] = {}
    if value.startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise invalid_setting("GATEWAY_STATIC_TOKENS", "<json>", f"invalid JSON: {exc}") from None
        for token, claims in parsed.items():
            if not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
                raise invalid_setting("GATEWAY_STATIC_TOKENS", "<json>",
                                      "each token maps to an object of claims with a string 'sub'")
            tokens[token_digest(token)] = claims
        return tokens
    for item in value.split(","):
        token, sep, subject = item.strip().partition(":")
        if not sep or not token or not subject:
            raise invalid_setting("GATEWAY_STATIC_TOKENS", "<hidden>", "expected token:subject[,token:subject...]")
        tokens[token_digest(token)] = {"sub": subject}
    return tokens
