"""Combine instances' statistics into the cluster's: sum own figures, take the largest shared one, merge rooms."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import msgspec

from proto.stats import (
    SECTION_NAMES,
    ChatRoomStats,
    ClusterStats,
    InstanceRef,
    InstanceStats,
    Section,
)

S = TypeVar("S", bound=Section)


def combine_sections(cls: type[S], sections: Iterable[S]) -> S:
    """One section from many replicas' (see ``proto.stats`` for the rules)."""
    values: dict[str, Any] = {}
    for section in sections:
        for field in msgspec.structs.fields(cls):
            name = field.name
            value = getattr(section, name)
            if name not in values:
                values[name] = value
            elif isinstance(value, bool):
                values[name] = values[name] or value
            elif isinstance(value, int | float):
                values[name] = max(values[name], value) if name in cls.shared_fields else values[name] + value
            elif isinstance(value, dict):
                values[name] = _merge(values[name], value)
    return cls(**values).settled()


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Keyed figures: rooms combine as sections; plain numbers describe one shared thing (take the largest)."""
    merged = dict(a)
    for key, value in b.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, ChatRoomStats):
            merged[key] = combine_sections(ChatRoomStats, (merged[key], value))
        else:
            merged[key] = max(merged[key], value)
    return merged


def combine(answers: Iterable[InstanceStats], unanswered: Iterable[InstanceRef] = ()) -> ClusterStats:
    """The seed's ``Streaming.stats`` for the whole cluster from each instance's answer."""
    answers = list(answers)
    combined: dict[str, Section] = {}
    for name in SECTION_NAMES:
        present = [s for s in (getattr(a, name) for a in answers) if s is not None]
        if present:
            combined[name] = combine_sections(type(present[0]), present)
    services = Counter(a.service for a in answers)
    cluster = ClusterStats(
        services=dict(sorted(services.items())),
        unanswered=sorted(unanswered, key=lambda r: (r.service, r.instance)),
        errors=[InstanceRef(service=a.service, instance=a.instance, error=a.error) for a in answers if a.error],
        at=time.time(),
    )
    return msgspec.structs.replace(cluster, **combined)
