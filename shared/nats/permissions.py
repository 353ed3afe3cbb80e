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


_PLACEHOLDER = "PREFIXPLACEHOLDER"


class _Layout:
    """The subject families of one prefix (or of every prefix, ``*``), as permission patterns.

    Subjects come from ``proto.subjects.Subjects`` under a placeholder prefix, then the placeholder becomes the
    prefix (or ``*``): a subject renamed there is renamed here, and no permission names a subject of its own.
    """

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        # Stream names are the prefix in upper case: with every prefix at once only a whole-token wildcard fits.
        self.any = prefix == ANY_PREFIX
        self.streams = None if self.any else Subjects(prefix)
        s = Subjects(_PLACEHOLDER)

        def sub(subject: str) -> str:
            return prefix + subject.removeprefix(_PLACEHOLDER)

        self.run_events = sub(s.run_events_all)
        self.run_client = [sub(s.run_requests), sub(s.run_cancel_all), sub(s.run_agents), sub(s.run_decide)]
        self.chat_commands = sub(s.chat_commands)
        self.chat_room_events = sub(s.chat_room_events_all)
        self.chat_store = [sub(s.chat_directory), sub(s.chat_room_logs_all), sub(s.chat_feed_all),
                           self.chat_room_events]
        self.events = sub(s.events_all)
        self.channels = sub(s.channels_all)
        self.presence = sub(s.presence("x")).rsplit(".", 1)[0] + ".>"
        self.gateway = [sub(s.gateway_control), sub(s.gateway_broadcast), sub(s.extensions_all)]
        self.jobs_to_scheduler = [sub(s.job_enqueue), sub(s.job_requests)]
        self.jobs = sub(s.job_enqueue).rsplit(".", 1)[0] + ".>"  # requests, dispatch, lifecycle, cancel, wake
        self.job_lifecycle = sub(s.job_lifecycle_all)
        self.metrics = [sub(s.cluster_stats), sub(s.cluster_health)]
        self.stats = [sub(s.service_stats), sub(s.stats_reporters)]
        self.lifecycle = [sub(s.service_lifecycle_all), sub(s.telemetry_all)]
        self.svc = sub(s.service_stats).rsplit(".", 1)[0] + ".>"

    def stream(self, kind: str) -> str:
        return "*" if self.streams is None else self.streams.stream_name(kind)

    def manage(self, *streams: str, purge: bool = False) -> list[str]:
        """Create and update (never delete) the named streams: what ``ensure_stream`` needs; ``purge`` too for
        a store that removes its own entries (the chat service deleting a room)."""
        ops = ("CREATE", "UPDATE", "PURGE") if purge else ("CREATE", "UPDATE")
        return [f"$JS.API.STREAM.{op}.{name}" for name in streams for op in ops]

    def kv_write(self, *kinds: str) -> list[str]:
        return [f"$KV.{self.stream(kind)}.>" for kind in kinds]

    def kv_manage(self, *kinds: str) -> list[str]:
        return self.manage(*("*" if self.any else f"KV_{self.stream(kind)}" for kind in kinds))


# JetStream reads every process makes: account and stream info, consumers (create, next, delete), direct gets,
# acks and flow control; never a stream's deletion, purge or a message's removal.
_JS_READS = ["$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
             "$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>"]
_RUN_BUCKETS = ("run_state", "runner_leases", "open_runs")


def permissions(role: str, prefix: str) -> Permissions:
    """The grants of ``role`` (one of :data:`ROLES`) under ``prefix`` (or :data:`ANY_PREFIX`)."""
    if role == "admin":
        return Permissions(publish=(">",), subscribe=(">",))
    x = _Layout(prefix)
    # Every process: replies, micro services, its lifecycle and stats, reading streams.
    publish = ["_INBOX.>", "$SRV.>", *x.lifecycle, *x.stats, *_JS_READS]
    subscribe = ["_INBOX.>", "$SRV.>", *x.stats, x.lifecycle[0]]
    # What only its owner writes: the run log and run state (agent-runner), the chat log, feed and room events.
    owned = {"agent-runner": [x.run_events, *x.kv_write(*_RUN_BUCKETS)], "chat": x.chat_store}
    if role == "gateway":
        publish += [*x.run_client, x.chat_commands, *x.jobs_to_scheduler, x.channels, x.presence, *x.gateway,
                    x.events, *x.metrics, *x.manage(x.stream("events")),
                    # The Responses API's delete forgets a response: it purges that run's events (never adds one).
                    f"$JS.API.STREAM.PURGE.{x.stream('runs')}"]
        subscribe += [x.channels, x.presence, *x.gateway, x.events, x.chat_room_events, x.run_events]
    elif role == "agent-runner":
        # A tool may enqueue a job (it runs in the agent-runner's process, on its connection or user).
        publish += [*owned["agent-runner"], *x.run_client, x.events, *x.jobs_to_scheduler, *x.manage(x.stream("runs")),
                    *x.kv_manage(*_RUN_BUCKETS)]
        subscribe += x.run_client
    elif role == "chat":
        publish += [*owned["chat"], *x.run_client, x.events,
                    *x.manage(x.stream("chat"), x.stream("chat_feed"), purge=True)]
        subscribe += [x.chat_commands, x.chat_room_events, x.run_events]
    elif role == "scheduler":
        publish += [x.jobs, *x.run_client, x.events, *x.manage(x.stream("events"))]
        subscribe += [x.jobs, x.run_events]
    elif role == "metrics":
        publish += x.metrics
        subscribe += [x.svc, *x.metrics, x.events, x.job_lifecycle]
    elif role == "client":
        publish += [*x.run_client, x.chat_commands, x.events, x.jobs, x.channels, *x.metrics,
                    *x.manage(x.stream("events"))]
        subscribe += [x.events, x.jobs, x.channels, x.chat_room_events, x.run_events]
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
    anonymous: str = ""  # the role a connection without credentials gets (nats-server's no_auth_user); none: refused

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
        if self.anonymous:
            lines.append(f"no_auth_user: {json.dumps(self.user(self.anonymous))}")
        return "\n".join(lines) + "\n"


def password_variable(role: str) -> str:
    """The environment variable that holds ``role``'s password for nats-server (``RAAF_NATS_GATEWAY_PASSWORD``)."""
    return f"RAAF_NATS_{role.upper().replace('-', '_')}_PASSWORD"
