"""Jobs wire types and subjects: user-supplied queue and type names never become wildcards or extra tokens."""

from __future__ import annotations

import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.errors import Error, ErrorCode
from proto.jobs import (
    LIFECYCLE_EVENT_NAMES,
    EnqueueJob,
    JobStats,
    enqueue_decoder,
    job_reply_decoder,
    job_request_decoder,
    jobs_encoder,
)
from proto.subjects import Subjects
from shared.jobs.errors import JobError, RemoteJobError, queue_full, schedule_in_past

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_\-~]+")


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_dispatch_subjects_and_queue_groups_stay_two_safe_tokens(queue: str, job_type: str) -> None:
    subjects = Subjects("raaf")
    dispatch = subjects.job_dispatch_queue(queue, job_type).split(".")
    assert dispatch[:3] == ["raaf", "jobs", "dispatch"] and len(dispatch) == 5
    assert all(SAFE_TOKEN.fullmatch(token) for token in dispatch[3:])
    group = subjects.job_workers_group(queue, job_type)
    assert SAFE_TOKEN.fullmatch(group.replace("-", "_")) and " " not in group and "." not in group


def test_every_lifecycle_event_has_a_plain_subject() -> None:
    subjects = Subjects("raaf")
    names = set(LIFECYCLE_EVENT_NAMES.values())
    assert names == {"enqueued", "started", "succeeded", "failed", "retried", "dead", "cancelled"}
    assert all(subjects.job_lifecycle(n) == f"raaf.jobs.lifecycle.{n}" for n in names)


def test_enqueue_requests_decode_with_or_without_their_tag() -> None:
    plain = enqueue_decoder.decode(b'{"job_type": "email", "data": {"to": "x"}}')
    tagged = job_request_decoder.decode(jobs_encoder.encode(plain))
    assert isinstance(tagged, EnqueueJob) and tagged.job_type == "email"
    assert msgspec.json.decode(plain.data) == {"to": "x"}
    with pytest.raises(msgspec.ValidationError):
        job_request_decoder.decode(b'{"job_type": "email"}')  # the shared subject needs the tag


def test_replies_keep_zero_counts_on_the_wire() -> None:
    stats = JobStats(queue="jobs", running=True, workers=1, high_priority_queue=0, normal_priority_queue=0,
                     low_priority_queue=0, scheduled_jobs=0, failed_jobs=0, running_jobs=0, succeeded_jobs=0,
                     recurring_schedules=0)
    assert msgspec.json.decode(jobs_encoder.encode(stats))["failed_jobs"] == 0
    assert job_reply_decoder.decode(jobs_encoder.encode(stats)) == stats


def test_typed_errors_survive_the_wire() -> None:
    for exc in (queue_full("email", 10), schedule_in_past(5.0, 10.0)):
        wire = job_reply_decoder.decode(jobs_encoder.encode(exc.to_wire(ref="r1")))
        assert isinstance(wire, Error) and wire.ref == "r1"
        back = JobError.from_wire(wire)
        assert type(back) is type(exc) and back.kind == exc.kind  # the situation, not only the code, survives
        assert back.attributes() == exc.attributes() and back.code is exc.code
    foreign = JobError.from_wire(Error(code=ErrorCode.INTERNAL, message="boom"))
    assert isinstance(foreign, RemoteJobError) and foreign.code is ErrorCode.INTERNAL and foreign.kind is None
