"""Where a test runs: the repository root, a prefix no other test uses, and a service's test environment."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

from shared.devstack.servers import NatsServer
from shared.service.app import App

ROOT = Path(__file__).resolve().parents[2]


def unique_prefix(tag: str = "t") -> str:
    """A subject prefix no other test uses, so subjects, streams and Redis keys never collide."""
    return f"{tag}{uuid.uuid4().hex[:12]}"


def service_env(nats_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for a service under test: fast reconnects, free HTTP port, a test prefix."""
    env = {
        "NATS_URL": nats_url,
        "REDIS_URL": redis_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "WEBSOCKET_PORT": "0",
        "NATS_RECONNECT_WAIT": "0.2",
        "SHUTDOWN_TIMEOUT": "5",
        "LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env


def own_user(app: App, server: NatsServer) -> None:
    """Give a service app that would connect as the admin its own NATS user instead (permissions on)."""
    if server.users is not None and app.runtime.nats_url == server.url:
        app.runtime = dataclasses.replace(app.runtime, nats_url=server.url_for(app.service))


def own_user_env(module: str, env: dict[str, str], server: NatsServer) -> dict[str, str]:
    """The same for ``python -m services.<name>``: its own user's URL in place of the admin's."""
    service = module.removeprefix("services.").replace("_", "-")
    if server.users is None or env.get("NATS_URL") != server.url or service not in server.users.passwords:
        return env
    return {**env, "NATS_URL": server.url_for(service)}
