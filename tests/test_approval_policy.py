"""The agents file's approval policy: which calls wait for a decision, with which deadline, outcome and approvers."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.runs.approvals import ApprovalPolicy, ApprovalRule, Requirement


def test_a_rule_matches_by_tool_glob_agent_glob_and_a_regex_per_argument() -> None:
    policy = ApprovalPolicy([ApprovalRule(tool="transfer_*", agent="bank*", when={"amount": "[0-9]{4,}"},
                                          approvers=["auditor"], deadline=60, outcome="fail")],
                            deadline=3600, outcome="reject")
    assert policy.requirement("banker", "transfer_funds", '{"amount": 5000}') == Requirement(
        deadline=60, outcome="fail", approvers=("auditor",))
    assert policy.requirement("banker", "transfer_funds", '{"amount": 999}') is None, "under the pattern"
    assert policy.requirement("clerk", "transfer_funds", '{"amount": 5000}') is None, "another agent"
    assert policy.requirement("banker", "refund", '{"amount": 5000}') is None, "another tool"
    assert policy.requirement("banker", "transfer_funds", '{"to": "x"}') is None, "the argument is missing"
    assert policy.requirement("banker", "transfer_funds", "not json") is None


def test_strings_match_as_they_are_and_other_values_as_their_json() -> None:
    policy = ApprovalPolicy([ApprovalRule(tool="*", when={"path": "/etc/.*", "force": "true"})])
    assert policy.requirement("ops", "rm", '{"path": "/etc/passwd", "force": true}') is not None
    assert policy.requirement("ops", "rm", '{"path": "/tmp/x", "force": true}') is None
    assert policy.requirement("ops", "rm", '{"path": "/etc/passwd", "force": false}') is None


def test_a_tool_that_requires_approval_always_waits_with_the_defaults_unless_a_rule_says_more() -> None:
    policy = ApprovalPolicy([ApprovalRule(tool="refund", when={"amount": "[0-9]{3,}"}, deadline=0)],
                            deadline=120, outcome="reject")
    assert policy.requirement("a", "delete", "{}", always=True) == Requirement(deadline=120, outcome="reject")
    assert policy.requirement("a", "refund", '{"amount": 5}', always=True) == Requirement(deadline=120,
                                                                                           outcome="reject")
    assert policy.requirement("a", "refund", '{"amount": 500}') == Requirement(deadline=None, outcome="reject"), \
        "deadline 0: none"


def test_a_rule_with_a_bad_regex_or_deadline_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="not a regex"):
        ApprovalPolicy([ApprovalRule(tool="x", when={"a": "("})])
    with pytest.raises(ConfigurationError, match="deadline"):
        ApprovalPolicy([ApprovalRule(tool="x", deadline=-1)])
