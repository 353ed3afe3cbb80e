"""The access module's decisions: owners, grants, admins, inline agents and namespaced ids."""

from __future__ import annotations

import msgspec
import pytest

from proto.jobs import NULL, JobInfo, JobStatus, Priority, RecurringJob
from proto.runs import AgentSpec, RunStarted, TextDelta, is_run_id
from shared import access
from shared.errors import BadRequestError, ForbiddenError
from shared.identity import ADMIN_ROLE, Identity
from shared.jobs.errors import InvalidScheduleError
from shared.jobs.model import check_cron_interval, check_job_id

ALICE = Identity.from_claims({"sub": "alice", "runs": ["assistant", "helper"], "jobs": ["email", "run_agent"]})
MALLORY = Identity.from_claims({"sub": "mallory", "runs": ["assistant"], "jobs": ["email"]})
ADMIN = Identity.from_claims({"sub": "root", "roles": [ADMIN_ROLE]})


def started(owner: str | None) -> RunStarted:
    return RunStarted(run_id="r1", seq=1, at=0.0, agent="assistant", model="m", instance="i", owner=owner)


def job(owner: str | None) -> JobInfo:
    return JobInfo(job_id="j1", job_type="email", queue="jobs", status=JobStatus.QUEUED, priority=Priority.NORMAL,
                   attempts=0, max_attempts=1, data=NULL, result=NULL, error=None, enqueued_at=None, run_at=None,
                   started_at=None, finished_at=None, worker=None, cancel_requested=False, owner=owner)


def test_a_run_is_readable_by_its_owner_and_admins_only() -> None:
    access.check_run(ALICE, "r1", started("alice"))
    access.check_run(ADMIN, "r1", started("alice"))
    with pytest.raises(ForbiddenError) as denied:
        access.check_run(MALLORY, "r1", started("alice"), "cancel")
    assert denied.value.to_wire().code == "forbidden" and denied.value.ref == "r1"


def test_an_ownerless_run_is_readable_by_admins_only() -> None:
    access.check_run(ADMIN, "r1", started(None))
    for identity in (ALICE, MALLORY, Identity.anonymous()):
        with pytest.raises(ForbiddenError):
            access.check_run(identity, "r1", started(None))
    with pytest.raises(ForbiddenError):
        access.check_run(ALICE, "r1", TextDelta(run_id="r1", seq=1, at=0.0, agent="a", delta="x"))


def test_jobs_and_schedules_belong_to_their_owner() -> None:
    access.check_job(ALICE, job("alice"))
    with pytest.raises(ForbiddenError):
        access.check_job(MALLORY, job("alice"), "cancel")
    with pytest.raises(ForbiddenError):
        access.check_job(ALICE, job(None))
    access.check_job(ADMIN, job(None))
    mine = RecurringJob(name="n1", cron="0 * * * *", job_type="email", owner="alice")
    theirs = RecurringJob(name="n2", cron="0 * * * *", job_type="email", owner="mallory")
    nobodys = RecurringJob(name="n3", cron="0 * * * *", job_type="email")
    assert access.visible_schedules(ALICE, [mine, theirs, nobodys]) == [mine]
    assert access.visible_schedules(ADMIN, [mine, theirs, nobodys]) == [mine, theirs, nobodys]
    with pytest.raises(ForbiddenError):
        access.check_schedule(MALLORY, mine)


def test_dead_letters_and_other_queues_need_the_admin_role() -> None:
    access.check_queue(ALICE, None)
    access.check_queue(ADMIN, "bulk")
    with pytest.raises(ForbiddenError):
        access.check_queue(ALICE, "bulk")
    with pytest.raises(ForbiddenError):
        access.require_admin(ALICE, "dead_letter", "purge")
    access.require_admin(ADMIN, "dead_letter", "purge")


def test_an_agent_job_needs_the_run_grant_for_its_agent_and_the_event_it_emits() -> None:
    data = msgspec.json.encode({"agent": "helper", "input": "hi", "event": "jobs.done"})
    access.check_job_data(ALICE, "run_agent", data)
    with pytest.raises(ForbiddenError):
        access.check_job_data(ALICE, "run_agent", msgspec.json.encode({"agent": "billing", "input": "x"}))
    with pytest.raises(ForbiddenError):  # the event it would emit is restricted
        access.check_job_data(ALICE, "run_agent", data, restricted_events=("jobs.*",))
    with pytest.raises(ForbiddenError):
        access.check_job_data(MALLORY, "run_agent", data)  # no grant for the job type itself
    with pytest.raises(BadRequestError):
        access.check_job_data(ALICE, "run_agent", b'{"input": "no agent"}')


def test_every_agent_a_run_can_reach_must_be_granted() -> None:
    configured = {"assistant": AgentSpec(name="assistant", tools=["search"], handoffs=["billing"]),
                  "billing": AgentSpec(name="billing")}
    with pytest.raises(ForbiddenError):  # assistant hands off to billing, which alice has no grant for
        access.check_agents(ALICE, "assistant", configured=configured)
    access.check_agents(ALICE, "helper", configured=configured)
    wide = Identity.from_claims({"sub": "bob", "runs": ["*"], "tools": ["lookup"]})
    with pytest.raises(ForbiddenError):  # the search tool is not in bob's tools grant
        access.check_agents(wide, "assistant", configured=configured)


def test_an_inline_agent_may_narrow_a_configured_agent_but_never_widen_it() -> None:
    configured = {"helper": AgentSpec(name="helper", tools=["search", "calc"])}
    access.check_agents(ALICE, "helper", [AgentSpec(name="helper", tools=["calc"])], configured)
    with pytest.raises(ForbiddenError):
        access.check_agents(ALICE, "helper", [AgentSpec(name="helper", tools=["shell"])], configured)
    with pytest.raises(ForbiddenError):  # an inline agent may not reach an agent outside the grant
        access.check_agents(ALICE, "helper", [AgentSpec(name="helper", handoffs=["billing"])])
    with pytest.raises(ForbiddenError):  # nor point the runner's credentials at another endpoint
        access.check_agents(ALICE, "helper", [AgentSpec(name="helper", base_url="http://evil.example")])
    access.check_agents(ADMIN, "helper", [AgentSpec(name="helper", api_key_env="OTHER_KEY")])


def test_ids_a_client_chooses_live_in_its_own_namespace() -> None:
    alice_run, mallory_run = access.scoped_run_id(ALICE, "order-17"), access.scoped_run_id(MALLORY, "order-17")
    assert alice_run != mallory_run and is_run_id(alice_run) and is_run_id(mallory_run)
    assert access.scoped_run_id(ALICE, alice_run) == alice_run  # the returned id, sent again, is the same run
    assert access.scoped_run_id(MALLORY, alice_run) != alice_run  # another's id lands in the caller's namespace
    job_id = access.scoped_job_id(ALICE, "nightly-report")
    assert check_job_id(job_id) == job_id and job_id != access.scoped_job_id(MALLORY, "nightly-report")
    assert access.scoped_schedule_name(ALICE, "daily") != access.scoped_schedule_name(MALLORY, "daily")
    assert access.scoped_run_id(Identity.anonymous(), "mine") == "mine"


def test_a_listing_shows_agents_whole_to_admins_and_without_prompts_to_others() -> None:
    agents = [AgentSpec(name="assistant", instructions="secret prompt", api_key_env="KEY"),
              AgentSpec(name="billing", instructions="other prompt")]
    assert access.visible_agents(ADMIN, agents) == agents
    shown = access.visible_agents(MALLORY, agents)
    assert [(a.name, a.instructions, a.api_key_env) for a in shown] == [("assistant", "", None)]


def test_a_cron_firing_more_often_than_allowed_is_refused() -> None:
    check_cron_interval("*/5 * * * *", 60)
    check_cron_interval("* * * * * *", 0)
    with pytest.raises(InvalidScheduleError, match="GATEWAY_JOBS_MIN_CRON_INTERVAL"):
        check_cron_interval("* * * * * *", 60)
    with pytest.raises(InvalidScheduleError):
        check_cron_interval("every minute", 60)


def test_a_tokens_run_limits_cap_what_a_run_may_ask_for() -> None:
    capped = Identity.from_claims({"sub": "bob", "max_turns": 3, "max_run_seconds": 30})
    assert access.run_limits(capped, None, None) == (3, 30.0)
    assert access.run_limits(capped, 2, 10.0) == (2, 10.0)
    with pytest.raises(ForbiddenError, match="max_turns"):
        access.run_limits(capped, 10, None)
    with pytest.raises(ForbiddenError, match="timeout"):
        access.run_limits(capped, None, 600.0)
    assert access.run_limits(ALICE, 50, 600.0) == (50, 600.0)  # no claims: the request's own values
