"""Each service's NATS user: the subjects it may publish and subscribe to, derived from ``proto.subjects``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from proto.subjects import Subjects

# The roles with a NATS user of their own: the five services, library users (raaf.Runner, EventEmitter,
# BackgroundProcessor workers, RealTimeChat as a client) and an operator who may do anything.
SERVICES = ("gateway", "agent-runner", "chat", "scheduler", "metrics")
ROLES = (*SERVICES, "client", "admin")

ANY_PREFIX = "*"  # one server for many deployments (the test suite): every prefix at once


@dataclass(frozen=True, slots=True)
class Permissions:
    """One user's grants, as nats-server's ``permissions`` block (deny wins over allow)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()

    def config(self) -> dict[str, object]:
        publish: dict[str, object] = {"allow": list(self.publish)}
        if self.publish_deny:
            publish["deny"] = list(self.publish_deny)
        # allow_responses: a user may answer the requests it received (micro endpoints, stats) and no more.
        return {"publish": publish, "subscribe": {"allow": list(self.subscribe)}, "allow_responses": True}


class _Layout:
    """The subject families of one prefix (or of every prefix, ``*``), as permission patterns."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        # Stream names are the prefix in upper case: with every prefix at once only a whole-token wildcard fits.
        self.any = prefix == ANY_PREFIX
        self.s = None if self.any else Subjects(prefix)

    def stream(self, kind: str) -> str:
        return "*" if self.s is None else self.s.stream_name(kind)

    def manage(self, *streams: str, purge: bool = False) -> list[str]:
        """Create and update (never delete) the named streams: what ``ensure_stream`` needs; ``purge`` too for
        a store that removes its own entries (the chat service deleting a room)."""
        ops = ("CREATE", "UPDATE", "PURGE") if purge else ("CREATE", "UPDATE")
        return [f"$JS.API.STREAM.{op}.{name}" for name in streams for op in ops]

    def kv_write(self, *kinds: str) -> list[str]:
        return [f"$KV.{self.stream(kind)}.>" for kind in kinds]

    def kv_manage(self, *kinds: str) -> list[str]:
        return self.manage(*("*" if self.any else f"KV_{self.stream(kind)}" for kind in kinds))


def _common(x: _Layout) -> tuple[list[str], list[str]]:
    """What every platform process does: replies, lifecycle and stats, reading streams through consumers."""
    p = x.p
    publish = [
        "_INBOX.>", "$SRV.>", f"{p}.svc.lifecycle.>", f"{p}.svc.telemetry.>", f"{p}.svc.stats", f"{p}.svc.reporters",
        # JetStream reads: account and stream info, consumers (create, next, delete), direct gets, acks and
        # flow control; never a stream's deletion, purge or a message's removal.
        "$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
        "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>",
    ]
    subscribe = ["_INBOX.>", "$SRV.>", f"{p}.svc.stats", f"{p}.svc.reporters", f"{p}.svc.lifecycle.>"]
    return publish, subscribe


def _run_client(p: str) -> list[str]:
    """Starting, cancelling and listing runs (``shared.clients.runs``): never writing a run's events."""
    return [f"{p}.runs.request", f"{p}.runs.cancel.*", f"{p}.runs.agents"]


def _run_follower(p: str) -> list[str]:
    """Following runs live (a run's events on their core subject, besides the stream)."""
    return [f"{p}.runs.events.>"]


def permissions(role: str, prefix: str) -> Permissions:
    """The grants of ``role`` (one of :data:`ROLES`) under ``prefix`` (or :data:`ANY_PREFIX`)."""
    x = _Layout(prefix)
    p = x.p
    if role == "admin":
        return Permissions(publish=(">",), subscribe=(">",))
    publish, subscribe = _common(x)
    # What only its owner writes: the run log and run state (agent-runner), the chat log, feed and room events.
    owned = {
        "agent-runner": [f"{p}.runs.events.>", *x.kv_write("run_state", "runner_leases", "open_runs")],
        "chat": [f"{p}.chat.dir", f"{p}.chat.log.*", f"{p}.chat.feed.>", f"{p}.chat.room.>"],
    }
    if role == "gateway":
        publish += [*_run_client(p), f"{p}.chat.cmd", f"{p}.jobs.enqueue", f"{p}.jobs.request", f"{p}.channel.>",
                    f"{p}.presence.>", f"{p}.gateway.>", f"{p}.events.>", f"{p}.metrics.>",
                    *x.manage(x.stream("events"))]
        subscribe += [f"{p}.channel.>", f"{p}.presence.>", f"{p}.gateway.>", f"{p}.events.>", f"{p}.chat.room.>",
                      *_run_follower(p)]
    elif role == "agent-runner":
        publish += [*owned["agent-runner"], *_run_client(p), f"{p}.events.>", *x.manage(x.stream("runs")),
                    *x.kv_manage("run_state", "runner_leases", "open_runs")]
        subscribe += [f"{p}.runs.request", f"{p}.runs.cancel.*", f"{p}.runs.agents"]
    elif role == "chat":
        publish += [*owned["chat"], *_run_client(p), f"{p}.events.>",
                    *x.manage(x.stream("chat"), x.stream("chat_feed"), purge=True)]
        subscribe += [f"{p}.chat.cmd", f"{p}.chat.room.>", *_run_follower(p)]
    elif role == "scheduler":
        publish += [f"{p}.jobs.>", *_run_client(p), f"{p}.events.>", *x.manage(x.stream("events"))]
        subscribe += [f"{p}.jobs.>", *_run_follower(p)]
    elif role == "metrics":
        publish += [f"{p}.metrics.>"]
        subscribe += [f"{p}.svc.>", f"{p}.metrics.>", f"{p}.events.>", f"{p}.jobs.lifecycle.>"]
    elif role == "client":
        publish += [*_run_client(p), f"{p}.chat.cmd", f"{p}.events.>", f"{p}.jobs.>", f"{p}.channel.>",
                    f"{p}.metrics.>", *x.manage(x.stream("events"))]
        subscribe += [f"{p}.events.>", f"{p}.jobs.>", f"{p}.channel.>", f"{p}.chat.room.>", *_run_follower(p)]
    else:
        raise ValueError(f"unknown NATS role {role!r}: expected one of {', '.join(ROLES)}")
    # Spelled out, so a broader allow added later cannot hand a store's writes to anyone but its owner.
    deny = [subject for owner, subjects in owned.items() if owner != role for subject in subjects]
    return Permissions(publish=tuple(publish), subscribe=tuple(subscribe), publish_deny=tuple(deny))


@dataclass(frozen=True, slots=True)
class NatsUsers:
    """A password per role; ``config`` renders nats-server's ``authorization`` block for them."""

    passwords: Mapping[str, str]
    prefix: str = "raaf"
    users: Mapping[str, str] = field(default_factory=dict)  # role -> user name (default: the role)

    @classmethod
    def generate(cls, prefix: str = "raaf", roles: tuple[str, ...] = ROLES) -> NatsUsers:
        """Fresh random passwords (``make run``, tests, an operator's first config)."""
        # Letter first: nats-server reads a variable's value as a number when it is all digits.
        return cls({role: "p" + secrets.token_urlsafe(24) for role in roles}, prefix)

    def user(self, role: str) -> str:
        return self.users.get(role, role)

    def config(self, *, env_refs: bool = False) -> str:
        """The ``authorization`` block (nats-server's config format reads JSON values).

        ``env_refs``: each password is nats-server's reference to ``password_variable(role)``, resolved from the
        server's environment at start (a Kubernetes Secret, a Compose ``.env``), so the file holds no secret.
        """
        lines = [f"# Generated by `raaf nats-config --prefix {self.prefix}` (shared/nats/permissions.py).",
                 "authorization: {", "  users: ["]
        for role, password in sorted(self.passwords.items()):
            # A quoted "$NAME" is a literal in nats-server's format; only a bare one is a variable.
            secret = "$" + password_variable(role) if env_refs else json.dumps(password)
            grants = permissions(role, self.prefix).config()
            lines.append(f"    {{user: {json.dumps(self.user(role))}, password: {secret}, permissions: {{")
            lines += [f"      {key}: {json.dumps(value)}," for key, value in grants.items()]
            lines[-1] = lines[-1].rstrip(",") + "}}"
        lines += ["  ]", "}"]
        return "\n".join(lines) + "\n"


def password_variable(role: str) -> str:
    """The environment variable that holds ``role``'s password for nats-server (``RAAF_NATS_GATEWAY_PASSWORD``)."""
    return f"RAAF_NATS_{role.upper().replace('-', '_')}_PASSWORD"
