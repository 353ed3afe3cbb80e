"""Which tool calls need a person's approval, who may decide, until when: the agents file's approval policy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from shared.errors import ConfigurationError
from shared.identity import compile_pattern

Outcome = Literal["reject", "fail"]


class ApprovalRule(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[[approval]]`` in the agents file: calls of tools matching ``tool`` (a glob) by agents matching ``agent``
    whose arguments match every ``when`` regex (argument name -> regex, matched whole against the argument's
    text: a string as it is, anything else as JSON) wait for a decision. ``deadline`` seconds (None: the
    runner's ``RUN_APPROVAL_DEADLINE``; 0: none) apply ``outcome`` (None: ``RUN_APPROVAL_OUTCOME``).
    ``approvers``: subjects that may decide besides the run's owner."""

    tool: str
    agent: str = "*"
    when: dict[str, str] = {}
    deadline: float | None = None
    outcome: Outcome | None = None
    approvers: list[str] = []

    def check(self) -> None:
        for name, pattern in self.when.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(f"approval rule for {self.tool!r}: when.{name} is not a regex: {exc}") \
                    from None
        if self.deadline is not None and not 0 <= self.deadline <= 30 * 86400:
            raise ConfigurationError(f"approval rule for {self.tool!r}: deadline must be within 0..2592000 s")

    def matches(self, agent: str, tool: str, arguments: dict[str, Any] | None) -> bool:
        if not _glob(self.tool, tool) or not _glob(self.agent, agent):
            return False
        if not self.when:
            return True
        if arguments is None:
            return False
        for name, pattern in self.when.items():
            if name not in arguments:
                return False
            value = arguments[name]
            text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
            if re.fullmatch(pattern, text, re.DOTALL) is None:
                return False
        return True


@dataclass(frozen=True)
class Requirement:
    """A call that needs a decision: until ``deadline`` seconds after it was asked (None: no deadline)."""

    deadline: float | None
    outcome: Outcome
    approvers: tuple[str, ...] = ()


class ApprovalPolicy:
    """The rules of the agents file plus the tools that always need approval (``requires_approval``)."""

    def __init__(self, rules: Iterable[ApprovalRule] = (), *, deadline: float = 0.0,
                 outcome: Outcome = "reject") -> None:
        self.rules = list(rules)
        for rule in self.rules:
            rule.check()
        self.deadline = deadline
        self.outcome = outcome

    def requirement(self, agent: str, tool: str, arguments_json: str, *, always: bool = False
                    ) -> Requirement | None:
        """What a call of ``tool`` by ``agent`` needs (None: it runs at once); ``always``: the tool itself
        requires approval (the first matching rule still sets its deadline, outcome and approvers)."""
        arguments = _arguments(arguments_json)
        for rule in self.rules:
            if rule.matches(agent, tool, arguments):
                deadline = self.deadline if rule.deadline is None else rule.deadline
                return Requirement(deadline=deadline or None, outcome=rule.outcome or self.outcome,
                                   approvers=tuple(rule.approvers))
        if always:
            return Requirement(deadline=self.deadline or None, outcome=self.outcome)
        return None


def _glob(pattern: str, name: str) -> bool:
    compiled = compile_pattern(pattern)
    return compiled is not None and compiled.fullmatch(name) is not None


def _arguments(arguments_json: str) -> dict[str, Any] | None:
    try:
        decoded = msgspec.json.decode(arguments_json.encode() or b"{}")
    except msgspec.DecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None
