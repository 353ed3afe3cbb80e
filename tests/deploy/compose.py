"""Read docker-compose.yml as Compose does: YAML merge keys, then ``${VAR:-default}`` interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ is a literal $.
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_]\w*))")


class InterpolationError(ValueError):
    pass


def variables(text: str) -> list[tuple[str, str | None]]:
    """Every variable referenced, with its operator (``:-``, ``-``, ``:?``, ``?``) or None when it has none."""
    found = []
    for match in _VARIABLE.finditer(text):
        if match.group("escaped"):
            continue
        found.append((match.group("braced") or match.group("bare"), match.group("op")))
    return found


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = environ.get(name)
        unset_or_empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise InterpolationError(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(replace, value)


def load(path: Path) -> dict[str, Any]:
    """The document after YAML merge keys (``<<``), before interpolation (the form the schema describes)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def environment(service: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment after interpolation (map or ``KEY=VALUE`` list form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, environ.get(item, "")) for item in raw)
    values = interpolate(raw, environ)
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def duration_seconds(text: str) -> float:
    """Compose durations: ``1m30s``, ``35s``, ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)
