"""Helpers for tests that read PromQL: which series names a query refers to, and Grafana variables removed."""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan", "start", "end"}
_GRAFANA_VAR = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")


def without_grafana_variables(expr: str) -> str:
    """Replace Grafana's ``$__rate_interval``-style variables with something PromQL accepts."""
    return _GRAFANA_VAR.sub(lambda m: "5m" if m.group(1).startswith("__") else ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The series names ``expr`` selects (functions, keywords, labels and durations left out)."""
    text = _STRING.sub('""', without_grafana_variables(expr))
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names
