"""The one place that decides access: who may create, read, follow, cancel or delete which run, job, room."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from proto.jobs import JobInfo, RecurringJob, RunAgentJob
from proto.runs import AgentSpec, ApprovalRequested, RunEvent, RunQueued, RunStarted
from shared.errors import BadRequestError, ForbiddenError
from shared.event_grants import may_see
from shared.identity import ADMIN_ROLE, Identity, matches

__all__ = [
    "ADMIN_ROLE", "DEFAULT_TABLE", "MESSAGES", "ROUTES", "Access", "AccessTable", "Rule", "RuleKey", "check_agents",
    "check_decide", "check_event", "check_grant", "check_job", "check_job_data", "check_owner", "check_queue",
    "check_run",
    "check_schedule", "is_admin", "namespace", "require_admin", "route_access", "run_limits", "run_owner",
    "scoped_job_id", "scoped_run_id", "scoped_schedule_name", "visible_agents", "visible_schedules",
]


class Rule(enum.StrEnum):
    """How a route or message is decided. Every rule but ``public`` needs an identity the gateway accepts."""

    PUBLIC = "public"  # no identity: health, metrics, the chat pages (they hold no data)
    IDENTITY = "identity"  # any accepted identity; what it returns is the caller's own or aggregate
    GRANT = "grant"  # the identity's grant for the thing it names (``may(kind, name)``)
    OWNER = "owner"  # the resource's recorded owner, or an admin; ownerless resources: admins only
    ADMIN = "admin"  # the admin role only


@dataclass(frozen=True, slots=True)
class Access:
    """The access decision a route or a WebSocket message declares: its rule, on what, doing what."""

    rule: Rule
    kind: str
    action: str


# Every gateway route, by method and path template. A route missing here is refused at run time (the gateway's
# access middleware) and fails tests/test_access_table.py, so none can ship without a decision.
ROUTES: Final[dict[tuple[str, str], Access]] = {
    ("GET", "/healthz"): Access(Rule.PUBLIC, "service", "health"),
    ("GET", "/readyz"): Access(Rule.PUBLIC, "service", "health"),
    ("GET", "/metrics"): Access(Rule.PUBLIC, "service", "metrics"),
    ("GET", "/"): Access(Rule.PUBLIC, "page", "read"),
    ("GET", "/channels"): Access(Rule.PUBLIC, "page", "read"),
    ("GET", "/rooms"): Access(Rule.PUBLIC, "page", "read"),
    ("GET", "/ws"): Access(Rule.PUBLIC, "connection", "open"),  # authenticates in-protocol; MESSAGES decide
    ("GET", "/v1/stats"): Access(Rule.IDENTITY, "stats", "read"),
    ("POST", "/v1/channels/{channel}/messages"): Access(Rule.GRANT, "channel", "publish"),
    ("GET", "/v1/channels/{channel}/presence"): Access(Rule.GRANT, "channel", "read"),
    ("GET", "/v1/channels/{channel}/events"): Access(Rule.GRANT, "channel", "follow"),
    ("POST", "/v1/runs"): Access(Rule.GRANT, "run", "create"),
    ("GET", "/v1/runs/{run_id}"): Access(Rule.OWNER, "run", "read"),
    ("GET", "/v1/runs/{run_id}/events"): Access(Rule.OWNER, "run", "follow"),
    ("POST", "/v1/runs/{run_id}/cancel"): Access(Rule.OWNER, "run", "cancel"),
    ("POST", "/v1/runs/{run_id}/approvals/{call_id}"): Access(Rule.GRANT, "run", "decide"),  # check_decide
    ("GET", "/v1/agents"): Access(Rule.IDENTITY, "agent", "list"),  # granted agents only; prompts for admins
    ("POST", "/v1/chat/completions"): Access(Rule.GRANT, "run", "create"),
    ("GET", "/v1/models"): Access(Rule.IDENTITY, "agent", "list"),
    ("POST", "/v1/responses"): Access(Rule.GRANT, "run", "create"),  # previous_response_id: the owner's only
    ("GET", "/v1/responses/{response_id}"): Access(Rule.OWNER, "run", "read"),
    ("POST", "/v1/responses/{response_id}/cancel"): Access(Rule.OWNER, "run", "cancel"),
    ("DELETE", "/v1/responses/{response_id}"): Access(Rule.OWNER, "run", "delete"),
    ("POST", "/v1/ui/{agent}/chat"): Access(Rule.GRANT, "run", "create"),  # a chat continues for its owner only
    ("GET", "/v1/ui/{agent}/chat/{chat_id}/stream"): Access(Rule.OWNER, "run", "resume"),
    ("POST", "/v1/ui/{agent}/chat/{chat_id}/stop"): Access(Rule.OWNER, "run", "cancel"),
    ("POST", "/v1/ag-ui/{agent}"): Access(Rule.GRANT, "run", "create"),
    ("POST", "/v1/jobs"): Access(Rule.GRANT, "job", "create"),
    ("GET", "/v1/jobs/stats"): Access(Rule.ADMIN, "queue", "read"),
    ("GET", "/v1/jobs/dead"): Access(Rule.ADMIN, "dead_letter", "list"),
    ("DELETE", "/v1/jobs/dead"): Access(Rule.ADMIN, "dead_letter", "delete"),
    ("POST", "/v1/jobs/dead/retry"): Access(Rule.ADMIN, "dead_letter", "retry"),
    ("GET", "/v1/jobs/recurring"): Access(Rule.IDENTITY, "schedule", "list"),  # the caller's own; all for admins
    ("PUT", "/v1/jobs/recurring/{name}"): Access(Rule.GRANT, "schedule", "create"),
    ("DELETE", "/v1/jobs/recurring/{name}"): Access(Rule.OWNER, "schedule", "delete"),
    ("GET", "/v1/jobs/{job_id}"): Access(Rule.OWNER, "job", "read"),
    ("DELETE", "/v1/jobs/{job_id}"): Access(Rule.OWNER, "job", "cancel"),
    ("GET", "/v1/chat/rooms"): Access(Rule.IDENTITY, "room", "list"),  # rooms the identity may use
    ("GET", "/v1/chat/stats"): Access(Rule.IDENTITY, "room", "stats"),
    ("POST", "/v1/events/{name}"): Access(Rule.GRANT, "event", "create"),
    ("GET", "/v1/events/history"): Access(Rule.GRANT, "event", "read"),
    ("GET", "/v1/events"): Access(Rule.GRANT, "event", "follow"),
}

# Every WebSocket message type (the ``type`` tags of ``proto.gateway.ClientMessage``).
MESSAGES: Final[dict[str, Access]] = {
    "auth": Access(Rule.PUBLIC, "connection", "authenticate"),
    "ping": Access(Rule.PUBLIC, "connection", "ping"),
    "subscribe": Access(Rule.GRANT, "channel", "follow"),
    "unsubscribe": Access(Rule.IDENTITY, "channel", "leave"),
    "publish": Access(Rule.GRANT, "channel", "publish"),
    "presence": Access(Rule.GRANT, "channel", "read"),
    "chat_rooms": Access(Rule.IDENTITY, "room", "list"),
    "chat_create_room": Access(Rule.GRANT, "room", "create"),  # and the room's agent: a run grant
    "chat_join": Access(Rule.GRANT, "room", "join"),
    "chat_leave": Access(Rule.IDENTITY, "room", "leave"),
    "chat_send": Access(Rule.GRANT, "room", "send"),
    "chat_typing": Access(Rule.GRANT, "room", "send"),
    "chat_handoff": Access(Rule.GRANT, "room", "decide"),  # and the target agent: a run grant
    "chat_history": Access(Rule.GRANT, "room", "read"),
    "agent_stream": Access(Rule.GRANT, "run", "create"),
    "resume": Access(Rule.OWNER, "run", "resume"),
    "cancel": Access(Rule.OWNER, "run", "cancel"),
    "run_decide": Access(Rule.GRANT, "run", "decide"),  # check_decide: an approver, or the approvals grant
    "subscribe_events": Access(Rule.GRANT, "event", "follow"),
    "unsubscribe_events": Access(Rule.IDENTITY, "event", "leave"),
    "emit_event": Access(Rule.GRANT, "event", "create"),
}

_run_agent_job: Final = msgspec.json.Decoder(RunAgentJob)
RuleKey = tuple[str, str] | str  # a route (method, path template) or a WebSocket message tag


@dataclass(frozen=True, slots=True)
class AccessTable:
    """The rules one gateway enforces: the built-in ones, plus those its extensions declare (``access_rules``)."""

    routes: Mapping[tuple[str, str], Access]
    messages: Mapping[str, Access]

    def route(self, method: str, path: str) -> Access | None:
        """The rule of a route (``path`` is its template, as the router names it); None: it has none."""
        return self.routes.get(("GET" if method == "HEAD" else method, path))

    def message(self, tag: str) -> Access | None:
        return self.messages.get(tag)

    def extended(self, owner: str, rules: Mapping[RuleKey, Access]) -> AccessTable:
        """With ``owner``'s rules added; redefining a rule already there is an error (as a doubled handler is)."""
        routes, messages = dict(self.routes), dict(self.messages)
        for key, rule in rules.items():
            table: dict[Any, Access] = messages if isinstance(key, str) else routes
            if key in table:
                raise ValueError(f"{owner} redefines the access rule of {key!r}")
            table[key] = rule
        return AccessTable(routes, messages)


DEFAULT_TABLE: Final = AccessTable(ROUTES, MESSAGES)


# ---- who -----------------------------------------------------------------------------------------------------


def is_admin(identity: Identity) -> bool:
    return identity.has_role(ADMIN_ROLE)


def require_admin(identity: Identity, kind: str, action: str) -> None:
    if not is_admin(identity):
        raise ForbiddenError(f"{action} {kind} needs the {ADMIN_ROLE!r} role", details={"kind": kind})


def check_grant(identity: Identity, kind: str, name: str) -> None:
    """Creating or using a named thing: the identity's grant (or, without one, the deployment's restrictions)."""
    if not identity.may(kind, name):
        raise ForbiddenError(f"not allowed to use {kind} {name!r}", details={"kind": kind, "name": name})


def check_owner(identity: Identity, kind: str, resource: str, owner: str | None, action: str = "read") -> None:
    """Reading, following, cancelling or deleting a resource: its owner, or an admin; ownerless: admins only."""
    if is_admin(identity):
        return
    if owner is None or identity.subject is None or owner != identity.subject:
        raise ForbiddenError(f"{kind} {resource} belongs to someone else", ref=resource,
                             details={"kind": kind, "action": action})


# ---- runs ----------------------------------------------------------------------------------------------------


def run_owner(first: RunEvent) -> str | None:
    """The owner a run's first event names (``run_started`` / ``run_queued``); None for any other event."""
    return first.owner if isinstance(first, RunStarted | RunQueued) else None


def check_run(identity: Identity, run_id: str, first: RunEvent, action: str = "read") -> None:
    check_owner(identity, "run", run_id, run_owner(first), action)


def check_decide(identity: Identity, run_id: str, request: ApprovalRequested) -> None:
    """Approving or rejecting a tool call: a subject the request names (the run's owner, the policy's
    ``approvers``), an identity whose ``approvals`` grant matches the requesting agent, or an admin."""
    if is_admin(identity):
        return
    if identity.subject is not None and identity.subject in request.approvers:
        return
    granted = identity.grants.get("approve")
    if granted is not None and matches(granted, request.agent, identity.subject):
        return
    raise ForbiddenError(f"not allowed to decide tool call {request.call_id} of run {run_id}", ref=run_id,
                         details={"kind": "run", "action": "decide"})


def check_agents(identity: Identity, agent: str, inline: Iterable[AgentSpec] = (),
                 configured: Mapping[str, AgentSpec] | None = None) -> None:
    """Everything a run can reach must be granted: every agent it can hand off to, their tools and models.

    An inline agent of a configured agent's name may only narrow it (a subset of its tools and handoffs, its
    model or none); one of a new name needs the grants for all it names. An inline ``base_url`` or
    ``api_key_env`` points the runner's credentials elsewhere, so only admins may set them.
    """
    known = dict(configured or {})
    defined: dict[str, AgentSpec] = {}
    for spec in inline:
        base = known.get(spec.name)
        if (spec.base_url is not None or spec.api_key_env is not None) and not is_admin(identity):
            raise ForbiddenError(f"inline agent {spec.name!r}: base_url and api_key_env are for admins",
                                 details={"kind": "agent", "name": spec.name})
        if base is not None and not _narrows(spec, base):
            raise ForbiddenError(f"inline agent {spec.name!r} widens the configured agent of that name",
                                 details={"kind": "agent", "name": spec.name})
        defined[spec.name] = spec
    graph = {**known, **defined}
    seen: set[str] = set()
    todo = [agent]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        check_grant(identity, "run", name)
        reached = graph.get(name)
        if reached is None:
            continue  # served by the runners under that name; they refuse unknown agents
        for tool in reached.tools:
            check_grant(identity, "tool", tool)
        if reached.model is not None:
            check_grant(identity, "model", reached.model)
        todo.extend(reached.handoffs)


def run_limits(identity: Identity, max_turns: int | None, timeout: float | None) -> tuple[int | None, float | None]:
    """The turns and seconds a run may take under the token's ``max_turns`` / ``max_run_seconds`` claims: a request
    over a cap is refused, one that sets nothing gets the cap (without a claim, the request's own values)."""
    turns_cap, seconds_cap = _number(identity.claims.get("max_turns")), _number(identity.claims.get("max_run_seconds"))
    if turns_cap is not None:
        if max_turns is not None and max_turns > turns_cap:
            raise ForbiddenError(f"max_turns {max_turns} is over this token's {turns_cap:g}",
                                 details={"kind": "limit", "name": "max_turns"})
        max_turns = int(turns_cap) if max_turns is None else max_turns
    if seconds_cap is not None:
        if timeout is not None and timeout > seconds_cap:
            raise ForbiddenError(f"timeout {timeout:g}s is over this token's {seconds_cap:g}s",
                                 details={"kind": "limit", "name": "max_run_seconds"})
        timeout = seconds_cap if timeout is None else timeout
    return max_turns, timeout


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _narrows(spec: AgentSpec, base: AgentSpec) -> bool:
    return (set(spec.tools) <= set(base.tools) and set(spec.handoffs) <= set(base.handoffs)
            and spec.model in (None, base.model))


def visible_agents(identity: Identity, agents: Iterable[AgentSpec]) -> list[AgentSpec]:
    """The agents a listing shows: every one, whole, to admins; to anyone else the agents it may run, without
    their instructions (system prompts) or where their provider and key live."""
    if is_admin(identity):
        return list(agents)
    return [msgspec.structs.replace(a, instructions="", base_url=None, api_key_env=None)
            for a in agents if identity.may("run", a.name)]


def route_access(method: str, path: str) -> Access | None:
    """The built-in rule of a route (``path`` is its template, as the router names it); None: it has none."""
    return DEFAULT_TABLE.route(method, path)


# ---- jobs and schedules --------------------------------------------------------------------------------------


def check_queue(identity: Identity, queue: str | None) -> None:
    """Only admins pick a queue; everyone else uses the scheduler's first one."""
    if queue is not None:
        require_admin(identity, "queue", f"using queue {queue!r}:")


def check_event(identity: Identity, name: str, restricted: tuple[str, ...] = ()) -> None:
    """Emitting, or seeing every event a pattern matches: the ``events`` grant, or no restricted glob."""
    if not may_see(identity, name, restricted):
        raise ForbiddenError(f"not allowed to use event {name!r}", details={"kind": "event", "name": name})


def check_job_data(identity: Identity, job_type: str, data: bytes, *, agent_job_type: str = "run_agent",
                   restricted_events: tuple[str, ...] = (), configured: Mapping[str, AgentSpec] | None = None
                   ) -> bytes:
    """Enqueueing (or scheduling) a job: the job grant, and for an agent job what a run start of its agent needs
    (:func:`check_agents` over ``configured``, the runners' agents: handoffs, tools, models; :func:`run_limits`)
    and its event. The data to store: as given, or an agent job's with the token's run limits filled in."""
    check_grant(identity, "job", job_type)
    if job_type != agent_job_type:
        return data
    try:
        job = _run_agent_job.decode(data)
    except msgspec.MsgspecError as exc:
        raise BadRequestError(f"not a {agent_job_type} job: {exc}") from None
    check_agents(identity, job.agent, (), configured)
    if job.event is not None:
        check_event(identity, job.event, restricted_events)
    max_turns, timeout = run_limits(identity, job.max_turns, job.timeout)
    if (max_turns, timeout) == (job.max_turns, job.timeout):
        return data
    return msgspec.json.encode(msgspec.structs.replace(job, max_turns=max_turns, timeout=timeout))


def check_job(identity: Identity, info: JobInfo, action: str = "read") -> None:
    check_owner(identity, "job", info.job_id, info.owner, action)


def check_schedule(identity: Identity, spec: RecurringJob, action: str = "delete") -> None:
    check_owner(identity, "schedule", spec.name, spec.owner, action)


def visible_schedules(identity: Identity, specs: Iterable[RecurringJob]) -> list[RecurringJob]:
    """The schedules a listing shows: every one to admins, the caller's own to anyone else."""
    if is_admin(identity):
        return list(specs)
    return [s for s in specs if s.owner is not None and s.owner == identity.subject]


# ---- ids a client may choose ---------------------------------------------------------------------------------


def namespace(identity: Identity) -> str | None:
    """The prefix of every id this identity chooses: ``u`` and a digest of its subject (None: anonymous)."""
    if identity.subject is None:
        return None
    return "u" + hashlib.blake2b(identity.subject.encode(), digest_size=6).hexdigest()


def _scoped(identity: Identity, chosen: str, separator: str) -> str:
    prefix = namespace(identity)
    if prefix is None or chosen.startswith(prefix + separator):
        return chosen  # anonymous (loopback development), or already in the caller's own namespace
    return f"{prefix}{separator}{chosen}"


def scoped_run_id(identity: Identity, chosen: str) -> str:
    """A client-chosen run id inside the client's namespace (``u<digest>_<id>``), so no one takes another's."""
    return _scoped(identity, chosen, "_")


def scoped_job_id(identity: Identity, chosen: str) -> str:
    return _scoped(identity, chosen, ":")


def scoped_schedule_name(identity: Identity, chosen: str) -> str:
    return _scoped(identity, chosen, ".")
