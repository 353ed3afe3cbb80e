"""Write the Grafana dashboards (deploy/grafana/dashboards/*.json) from the short descriptions below.

Run ``python scripts/gen_dashboards.py`` after editing; ``--check`` exits 1 when the JSON files are out of date.
Every query names metrics from shared/metrics/catalogue.py; tests/test_metrics_catalogue.py holds them to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


@dataclass
class Panel:
    title: str
    queries: dict[str, str]  # legend -> PromQL
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    rows: list[tuple[str, list[Panel]]] = field(default_factory=list)


def quantiles(metric: str, *qs: float, where: str = "") -> dict[str, str]:
    series = f"{metric}_bucket{{{where}}}" if where else f"{metric}_bucket"
    return {f"p{round(q * 100)}": f"histogram_quantile({q}, sum by (le) (rate({series}[{RATE}])))" for q in qs}


def rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}[{RATE}]))"


# Queue figures are read from Redis, so every scheduler replica reports the same: max over replicas, then sum.
READY_JOBS = "sum by (priority) (max by (queue, priority) (raaf_jobs_queue_length))"
# raaf_cluster_job_* come from the metrics service's share of the job lifecycle events: sum over its replicas.
DEAD_LETTERS = f"sum(increase(raaf_cluster_job_dead_letters_total[{RATE}]))"

OVERVIEW = Dashboard("raaf-overview", "RAAF Streaming / Overview",
                     "Every service at a glance: instances, readiness, NATS and Redis health, load.", [
    ("Services", [
        Panel("Instances by service", {"{{service}}": "sum by (service) (raaf_cluster_instances)"}, kind="stat",
              description="Instances the metrics service knows (from $SRV.PING and lifecycle events)."),
        Panel("Ready instances by service", {"{{service}}": "sum by (service) (raaf_cluster_instances_ready)"},
              kind="stat", description="Instances whose /readyz passed at the metrics service's last check."),
        Panel("Scrape targets up", {"{{job}}": 'sum by (job) (up{job=~"raaf-.+"})'}),
        Panel("Ready (per scraped instance)", {"{{job}} {{instance}}": "raaf_service_ready"}),
    ]),
    ("NATS and Redis", [
        Panel("NATS connected", {"{{job}} {{instance}}": "raaf_nats_connected"}),
        Panel("NATS reconnects / s", {"{{job}}": rate("raaf_nats_reconnects_total", "job")}, unit="ops"),
        Panel("NATS client errors / s", {"{{job}}": rate("raaf_nats_errors_total", "job")}, unit="ops"),
        Panel("Redis errors / s", {"{{job}}": rate("raaf_redis_errors_total", "job")}, unit="ops"),
    ]),
    ("Load", [
        Panel("Client connections", {"{{transport}}": "sum by (transport) (raaf_gateway_connections)"}),
        Panel("Runs", {"active": "sum(raaf_runs_active)", "queued": "sum(raaf_runs_queued)"}),
        Panel("Jobs ready by priority", {"{{priority}}": READY_JOBS}),
        Panel("Chat", {"rooms": "max(raaf_chat_rooms)", "participants": "max(raaf_chat_participants)"}),
    ]),
    ("Event bus", [
        Panel("Event bus messages / s", {"published": rate("raaf_event_bus_messages_total"),
                                         "emitted (EventEmitter)": rate("raaf_events_emitted_total"),
                                         "delivered to listeners": rate("raaf_event_deliveries_total")},
              unit="ops"),
        Panel("Event bus bytes / s", {"published": rate("raaf_event_bus_bytes_total")}, unit="Bps"),
        Panel("Listener errors and drops / s", {"listener errors": rate("raaf_event_listener_errors_total"),
                                                "dropped (slow listeners)": rate("raaf_events_dropped_total"),
                                                "emit failures": rate("raaf_event_emit_failures_total")},
              unit="ops"),
        Panel("Resident memory", {"{{job}} {{instance}}": 'process_resident_memory_bytes{job=~"raaf-.+"}'},
              unit="bytes"),
    ]),
])

STREAMING = Dashboard("raaf-streaming-latency", "RAAF Streaming / Streaming latency",
                      "Time to first token, inter-token latency and run duration; WebSocket delivery.", [
    ("Runs", [
        Panel("Time to first token", quantiles("raaf_run_ttft_seconds", 0.5, 0.9, 0.99), unit="s"),
        Panel("Inter-token latency", quantiles("raaf_run_inter_token_seconds", 0.5, 0.99), unit="s"),
        Panel("Run duration", quantiles("raaf_run_duration_seconds", 0.5, 0.9, 0.99), unit="s"),
        Panel("Runs finished / s", {"{{outcome}}": rate("raaf_runs_total", "outcome")}, unit="ops"),
        Panel("Run failures / s by code", {"{{code}}": rate("raaf_run_failures_total", "code")}, unit="ops"),
        Panel("Tokens / s", {"{{kind}}": rate("raaf_run_tokens_total", "kind")}),
        Panel("Tool calls / s", {"{{outcome}}": rate("raaf_tool_calls_total", "outcome")}, unit="ops"),
        Panel("Handoffs / s", {"handoffs": rate("raaf_handoffs_total")}, unit="ops"),
    ]),
    ("Delivery", [
        Panel("Messages to and from clients / s", {"sent": rate("raaf_gateway_messages_sent_total"),
                                                   "received": rate("raaf_gateway_messages_received_total")},
              unit="ops"),
        Panel("Bytes to clients / s", {"sent": rate("raaf_gateway_sent_bytes_total")}, unit="Bps"),
        Panel("Channel fan-out time (one message to all local subscribers)",
              quantiles("raaf_gateway_fanout_seconds", 0.5, 0.99), unit="s"),
        Panel("Channel fan-out: subscribers per message",
              {**quantiles("raaf_gateway_fanout_recipients", 0.5, 0.99),
               "mean": f"sum(rate(raaf_gateway_fanout_recipients_sum[{RATE}])) "
                       f"/ sum(rate(raaf_gateway_fanout_recipients_count[{RATE}]))"},
              description="Local subscribers each channel message was written to, per gateway."),
        Panel("Channel messages / s", {"from NATS": rate("raaf_gateway_channel_messages_total"),
                                       "published by clients": rate("raaf_gateway_published_total")}, unit="ops"),
        Panel("Slow-consumer disconnects",
              {"disconnects": f"sum(increase(raaf_gateway_slow_consumers_total[{RATE}]))"}),
        Panel("Connections refused / s", {"{{reason}}": rate("raaf_gateway_connections_refused_total", "reason")},
              unit="ops"),
        Panel("Disconnects / s by reason", {"{{reason}}": rate("raaf_gateway_disconnects_total", "reason")},
              unit="ops"),
        Panel("Errors sent to clients / s", {"errors": rate("raaf_gateway_errors_sent_total"),
                                             "rate limited": rate("raaf_gateway_rate_limited_total")}, unit="ops"),
        Panel("Run streams", {"{{transport}}": "sum by (transport) (raaf_run_streams)"}),
        Panel("Run events to clients / s", {"{{transport}}": rate("raaf_run_stream_events_total", "transport")},
              unit="ops"),
    ]),
])

JOBS = Dashboard("raaf-jobs", "RAAF Streaming / Jobs",
                 "Durable jobs of every queue and worker: depth by priority, pickup latency, duration, retries, "
                 "failures and dead letters (from the job lifecycle events the metrics service folds).", [
    ("Queues", [
        Panel("Ready jobs by priority", {"{{priority}}": READY_JOBS}),
        Panel("Scheduled, running and dead", {name: f"sum(max by (queue) (raaf_jobs_{name}))"
                                              for name in ("scheduled", "running", "dead")}),
        Panel("Enqueued / s by priority", {"{{priority}}": rate("raaf_cluster_job_enqueues_total", "priority")},
              unit="ops", description="Every enqueue, by the scheduler or a library BackgroundProcessor."),
        Panel("Attempts finished / s", {"succeeded": rate("raaf_cluster_job_successes_total"),
                                        "failed": rate("raaf_cluster_job_failures_total"),
                                        "cancelled": rate("raaf_cluster_job_cancellations_total")}, unit="ops"),
    ]),
    ("Latency", [
        Panel("Pickup latency (due to claimed)", quantiles("raaf_cluster_job_pickup_seconds", 0.5, 0.9, 0.99),
              unit="s", description="Across every worker that publishes lifecycle events."),
        Panel("Job duration (succeeded and failed attempts)",
              quantiles("raaf_cluster_job_duration_seconds", 0.5, 0.9, 0.99), unit="s"),
        Panel("p99 pickup latency by queue",
              {"{{queue}}": "histogram_quantile(0.99, sum by (le, queue) "
                            f"(rate(raaf_cluster_job_pickup_seconds_bucket[{RATE}])))"}, unit="s"),
        Panel("p99 duration by job type",
              {"{{job_type}}": "histogram_quantile(0.99, sum by (le, job_type) "
                               f"(rate(raaf_cluster_job_duration_seconds_bucket[{RATE}])))"}, unit="s"),
        Panel("Enqueue latency (scheduler request)",
              quantiles("raaf_jobs_request_seconds", 0.5, 0.99, where='request=~"(?i).*enqueue.*"'), unit="s"),
        Panel("Delayed jobs promoted late by", quantiles("raaf_jobs_promote_lateness_seconds", 0.5, 0.99), unit="s"),
    ]),
    ("Failures", [
        Panel("Failed attempts / s by job type", {"{{job_type}}": rate("raaf_cluster_job_failures_total", "job_type")},
              unit="ops"),
        Panel("Retries / s by reason", {"{{reason}}": rate("raaf_cluster_job_retries_total", "reason")}, unit="ops"),
        Panel("Dead letters (per interval)", {"new dead jobs": DEAD_LETTERS,
                                              "by {{job_type}}": "sum by (job_type) "
                                              f"(increase(raaf_cluster_job_dead_letters_total[{RATE}]))"}),
        Panel("Leases expired / s by outcome", {"{{outcome}}": rate("raaf_jobs_lease_expired_total", "outcome")},
              unit="ops"),
        Panel("Store errors / s", {"scheduler": rate("raaf_jobs_store_errors_total"),
                                   "workers": rate("raaf_job_store_errors_total")}, unit="ops"),
    ]),
])

CHAT = Dashboard("raaf-chat", "RAAF Streaming / Chat", "Rooms, participants, messages and agent handoffs.", [
    ("Chat", [
        Panel("Rooms", {"rooms": "max(raaf_chat_rooms)"}, kind="stat"),
        Panel("Participants", {"participants": "max(raaf_chat_participants)"}, kind="stat"),
        Panel("Messages / s", {"messages": rate("raaf_chat_messages_total")}, unit="ops"),
        Panel("Room handoffs / s", {"by {{by}}": rate("raaf_chat_handoffs_total", "by")}, unit="ops"),
        Panel("Connected clients (gateway)", {"{{transport}}": "sum by (transport) (raaf_gateway_connections)"}),
        Panel("Messages to clients / s", {"sent": rate("raaf_gateway_messages_sent_total")}, unit="ops"),
    ]),
])

DASHBOARDS = (OVERVIEW, STREAMING, JOBS, CHAT)


def render(board: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row in board.rows:
        panels.append({"type": "row", "title": row_title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        for panel in row:
            width = 6 if panel.kind == "stat" else 12
            if x + width > 24:  # flow onto the next line of the row
                x, y = 0, y + 8
            panels.append(_panel(panel, next_id, x, y, width))
            next_id += 1
            x += width
        y += 8
    return {
        "uid": board.uid,
        "title": board.title,
        "description": board.description,
        "tags": ["raaf"],
        "editable": False,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["raaf"], "title": "RAAF dashboards", "asDropdown": True}],
        "panels": panels,
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int, width: int) -> dict[str, Any]:
    targets = [{"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
               for i, (legend, expr) in enumerate(panel.queries.items())]
    body: dict[str, Any] = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "datasource": DS,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
    }
    if panel.description:
        body["description"] = panel.description
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "value", "graphMode": "none"}
    else:
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                           "tooltip": {"mode": "multi", "sort": "desc"}}
    return body


def files() -> dict[Path, str]:
    return {OUT / f"{b.uid.removeprefix('raaf-')}.json": json.dumps(render(b), indent=2) + "\n" for b in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the JSON files differ from this script")
    args = parser.parse_args(argv)
    stale = [path for path, text in files().items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python scripts/gen_dashboards.py", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in files().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
