"""Plain-text rendering of cluster statistics and health for ``raaf stats``."""

from __future__ import annotations

import time

import msgspec

from proto.stats import SECTION_NAMES, ChatSystemStats, ClusterHealth, ClusterStats, Section

_WIDTH = 28


def render_stats(stats: ClusterStats) -> str:
    total = sum(stats.services.values())
    per_service = ", ".join(f"{name} {count}" for name, count in stats.services.items()) or "none"
    lines = [f"RAAF Streaming stats: {total} instance{'s' if total != 1 else ''} answered ({per_service})"]
    for ref in stats.unanswered:
        lines.append(f"  no answer from {ref.service} {ref.instance}")
    for ref in stats.errors:
        lines.append(f"  no figures from {ref.service} {ref.instance}: {ref.error}")
    for name in SECTION_NAMES:
        section: Section = getattr(stats, name)
        lines.append("")
        lines.append(name)
        for field in msgspec.structs.fields(section):
            value = getattr(section, field.name)
            if field.name == "rooms":
                continue
            if isinstance(value, dict):
                lines.append(f"  {field.name}")
                lines.extend(f"    {key:<{_WIDTH - 2}}{_value(figure)}" for key, figure in sorted(value.items()))
                continue
            lines.append(f"  {field.name:<{_WIDTH}}{_value(value)}")
        if isinstance(section, ChatSystemStats):
            lines.append(f"  {'rooms':<{_WIDTH}}{len(section.rooms)}")
            for room, figures in sorted(section.rooms.items()):
                lines.append(f"    {room:<{_WIDTH - 2}}participants {figures.participants:>5}   "
                             f"messages {figures.messages:>7}")
    return "\n".join(lines)


def render_health(health: ClusterHealth) -> str:
    ready = sum(1 for i in health.instances if i.ready)
    lines = [f"RAAF Streaming health: {health.status} ({ready}/{len(health.instances)} instances ready)"]
    rows = [("SERVICE", "INSTANCE", "READY", "HTTP", "DETAIL")]
    now = time.time()
    for i in health.instances:
        failing = ", ".join(name for name, ok in i.checks.items() if not ok)
        detail = i.error or (f"failing: {failing}" if failing else "") or ("draining" if i.draining else "")
        if i.last_seen:
            detail = f"{detail} (seen {max(0.0, now - i.last_seen):.0f}s ago)".strip()
        rows.append((i.service, i.instance, "yes" if i.ready else "NO", i.http_url or "-", detail))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row[:4])) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
