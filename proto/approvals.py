"""Tool call approvals on the wire: a decision on a parked run (to the runners, from clients) and its answer."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from proto.base import ClientRequest, Message
from proto.errors import Error

DEADLINE_DECIDER: Final = "deadline"  # ``decided_by`` of the outcome a deadline applied


class DecideApproval(Message, frozen=True, kw_only=True, tag="decide_approval"):
    """Published as a request to ``Subjects.run_decide`` (queue group ``agent-runner``): whichever runner takes
    it claims the parked run, logs ``run_approval_decided`` and continues the run.

    Access is decided before it is sent (the gateway's ``shared.access.check_decide``); ``decided_by`` is the
    deciding subject (or ``deadline``). ``outcome`` is the deadline's: ``fail`` ends the run with ``timeout``.
    """

    run_id: str
    call_id: str
    approved: bool
    decided_by: str
    message: str | None = None  # a rejection's message for the model (its tool output)
    arguments: str | None = None  # an approval's edited JSON arguments (None: the model's own)
    outcome: Literal["reject", "fail"] | None = None  # set by the deadline only


class DecisionAccepted(Message, frozen=True, kw_only=True, tag="decision_accepted"):
    """The decision is in the run log at ``seq``; ``instance`` continues the run (or it waits for more)."""

    run_id: str
    call_id: str
    seq: int
    instance: str
    ref: str | None = None  # the client's ``id`` (WebSocket)


class RunDecide(ClientRequest, frozen=True, kw_only=True, tag="run_decide"):
    """WebSocket: approve or reject a parked run's tool call (``run_approval_requested``).

    ``arguments`` (an approval only) replaces the model's arguments; ``message`` (a rejection) is what the
    model reads as the tool's output. Answered by ``decision_accepted`` or a typed ``error``.
    """

    run_id: str
    call_id: str
    approved: bool
    message: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    arguments: dict[str, Any] | None = None


class DecisionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/runs/{run_id}/approvals/{call_id}``: ``{"approved": true, "arguments": {...}}`` or
    ``{"approved": false, "message": "..."}``."""

    approved: bool
    message: Annotated[str, msgspec.Meta(max_length=16384)] | None = None
    arguments: dict[str, Any] | None = None


DecisionReply = DecisionAccepted | Error
approvals_encoder: Final = msgspec.json.Encoder()
decide_approval_decoder: Final = msgspec.json.Decoder(DecideApproval)
decision_reply_decoder: Final[msgspec.json.Decoder[DecisionAccepted | Error]] = msgspec.json.Decoder(DecisionReply)
run_decide_decoder: Final = msgspec.json.Decoder(RunDecide)
decision_body_decoder: Final = msgspec.json.Decoder(DecisionBody)


APPROVAL_DEADLINE_JOB: Final = "run_approval_deadline"  # the job type that applies a deadline's outcome


class ApprovalDeadline(msgspec.Struct, frozen=True, kw_only=True):
    """The data of a ``run_approval_deadline`` job, enqueued with ``run_at`` = the deadline when a run parks."""

    run_id: str
    call_id: str
    outcome: Literal["reject", "fail"] = "reject"


approval_deadline_decoder: Final = msgspec.json.Decoder(ApprovalDeadline)
