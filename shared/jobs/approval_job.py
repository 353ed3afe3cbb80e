"""The ``run_approval_deadline`` job type: when a parked run's tool call is still undecided at its deadline,
apply the configured outcome (reject: the model is told; fail: the run fails with ``timeout``)."""

from __future__ import annotations

import logging
from typing import Any, Protocol

import msgspec

from proto.approvals import (
    APPROVAL_DEADLINE_JOB,
    DEADLINE_DECIDER,
    DecideApproval,
    DecisionAccepted,
    approval_deadline_decoder,
)
from proto.errors import Error, ErrorCode
from shared.errors import error_from_wire
from shared.jobs.errors import PermanentJobError
from shared.jobs.processor import BackgroundProcessor

log = logging.getLogger("raaf.jobs.approvals")
DEADLINE_MESSAGE = "No decision was made on this tool call in time; it was not run."


class Decider(Protocol):
    """What the job needs: a way to send a decision to the runners (the platform's ``RunClient``)."""

    async def decide(self, decision: DecideApproval) -> DecisionAccepted | Error: ...


def handle_approval_deadlines(processor: BackgroundProcessor, decider: Decider) -> None:
    """Register the ``run_approval_deadline`` handler on ``processor``. A call decided meanwhile (``conflict``,
    ``not_found``) is nothing to do; a run no runner could take now (``unavailable`` ...) is retried."""

    async def deadline(data: Any) -> dict[str, Any]:
        try:
            job = approval_deadline_decoder.decode(msgspec.json.encode(data))
        except msgspec.MsgspecError as exc:
            raise PermanentJobError(f"not a {APPROVAL_DEADLINE_JOB} job: {exc}") from None
        reply = await decider.decide(DecideApproval(run_id=job.run_id, call_id=job.call_id, approved=False,
                                                    decided_by=DEADLINE_DECIDER, message=DEADLINE_MESSAGE,
                                                    outcome=job.outcome))
        if isinstance(reply, Error):
            if reply.code in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND):
                return {"applied": False, "reason": reply.message}
            raise error_from_wire(reply)
        log.info("approval %s of run %s: deadline applied (%s)", job.call_id, job.run_id, job.outcome)
        return {"applied": True, "outcome": job.outcome, "seq": reply.seq}

    processor.handle_job(APPROVAL_DEADLINE_JOB, deadline)
