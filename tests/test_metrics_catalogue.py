"""Metric names are defined once: services export them cleanly, and dashboards and alerts ask only for those."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from raaf.testing import OpenAIMock
from shared.devstack.servers import NatsServer, ValkeyServer
from shared.metrics.catalogue import CATALOGUE, exported_by, spec_for_sample
from shared.metrics.specs import CounterSpec, GaugeSpec, HistogramSpec, MetricSpec
from shared.service.app import App
from tests.support.apps import FACTORIES
from tests.support.env import ROOT
from tests.support.metrics_workload import sample, workload
from tests.support.promql import metric_names, without_grafana_variables

StartApp = Callable[[App], Awaitable[App]]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_BUILTINS = {"up"}

# Catalogued metrics an exporter does not show after the workload below. The test fails when one of these starts
# being exported, so this list only ever shrinks.
NOT_EXPORTED_YET: dict[str, set[str]] = {
    # Every catalogued metric is exported from the start: labelled counters begin at zero for known label values.
    "gateway": set(),
    "agent-runner": set(),
    "chat": set(),
    "scheduler": set(),
    "metrics": set(),
    # Library code, exported by whichever process hosts it: here the workload's own EventEmitter and job worker.
    "events": set(),
    "workers": set(),
}
LIBRARIES = ("events", "workers")

# Issue #8's list, each with a series that must have moved after the workload (exporter, series, labels).
# NATS reconnects and Redis errors need a server restart: tests/test_foundation_services.py counts those.
ISSUE_METRICS: list[tuple[str, str, dict[str, str]]] = [
    # WebSocket connections and messages, channel fan-out
    ("gateway", "raaf_gateway_connections_opened_total", {"transport": "ws"}),
    ("gateway", "raaf_gateway_messages_received_total", {}),
    ("gateway", "raaf_gateway_messages_sent_total", {}),
    ("gateway", "raaf_gateway_channel_messages_total", {}),
    ("gateway", "raaf_gateway_fanout_seconds_count", {}),
    ("gateway", "raaf_gateway_fanout_recipients_sum", {}),
    # run TTFT / inter-token latency / duration / tokens / failures by code, tool calls, handoffs
    ("agent-runner", "raaf_run_ttft_seconds_count", {}),
    ("agent-runner", "raaf_run_inter_token_seconds_count", {}),
    ("agent-runner", "raaf_run_duration_seconds_count", {}),
    ("agent-runner", "raaf_run_tokens_total", {"kind": "prompt"}),
    ("agent-runner", "raaf_run_tokens_total", {"kind": "completion"}),
    ("agent-runner", "raaf_run_failures_total", {}),
    ("agent-runner", "raaf_tool_calls_total", {"outcome": "ok"}),
    ("agent-runner", "raaf_handoffs_total", {}),
    # jobs: enqueue, pickup latency, duration, retries, dead letters, queue depth by priority
    ("scheduler", "raaf_jobs_enqueued_total", {"priority": "high"}),
    ("scheduler", "raaf_jobs_request_seconds_count", {}),
    ("metrics", "raaf_cluster_job_enqueues_total", {"priority": "low"}),
    ("metrics", "raaf_cluster_job_pickup_seconds_count", {}),
    ("metrics", "raaf_cluster_job_duration_seconds_count", {}),
    ("metrics", "raaf_cluster_job_successes_total", {}),
    ("metrics", "raaf_cluster_job_failures_total", {}),
    ("metrics", "raaf_cluster_job_retries_total", {"reason": "error"}),
    ("metrics", "raaf_cluster_job_dead_letters_total", {}),
    ("scheduler", "raaf_jobs_dead", {}),
    ("scheduler", "raaf_jobs_queue_length", {"priority": "low"}),
    ("scheduler", "raaf_jobs_scheduled", {}),
    ("workers", "raaf_job_pickup_seconds_count", {}),
    ("workers", "raaf_job_duration_seconds_count", {}),
    ("workers", "raaf_jobs_processed_total", {"outcome": "failed"}),
    # chat rooms / participants / messages
    ("chat", "raaf_chat_rooms", {}),
    ("chat", "raaf_chat_participants", {}),
    ("chat", "raaf_chat_messages_total", {}),
    # event bus throughput and listener errors
    ("metrics", "raaf_event_bus_messages_total", {}),
    ("metrics", "raaf_event_bus_bytes_total", {}),
    ("events", "raaf_events_emitted_total", {}),
    ("events", "raaf_event_deliveries_total", {}),
    ("events", "raaf_event_listener_errors_total", {}),
]


def catalogued_for(exporter: str) -> tuple[MetricSpec, ...]:
    """What ``exporter``'s exposition should carry: a service's own and every service's; a library's own."""
    if exporter in LIBRARIES:
        return tuple(s for s in CATALOGUE if exporter in s.exporters)
    return exported_by(exporter)


@pytest.fixture(scope="session")
def promtool() -> Iterator[str]:
    found = subprocess.run([str(ROOT / "scripts" / "ensure-promtool")], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"promtool unavailable: {found.stderr.strip()}")
    yield found.stdout.strip()


def run_promtool(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every query of every panel."""
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                yield path.name, f"variable {variable['name']}", str(variable["query"])


def alert_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


# ---- the catalogue itself ------------------------------------------------------------------------

@pytest.mark.parametrize("make, problem", [
    (lambda: CounterSpec(name="raaf_requests", help="x.", exporters=("gateway",)), "_total"),
    (lambda: GaugeSpec(name="raaf_open_total", help="x.", exporters=("gateway",)), "must not end"),
    (lambda: HistogramSpec(name="raaf_latency_milliseconds", help="x.", exporters=("gateway",)), "base units"),
    (lambda: GaugeSpec(name="Raaf-Bad", help="x.", exporters=("gateway",)), "names are raaf_"),
    (lambda: GaugeSpec(name="raaf_x", help="x.", exporters=("gateway",), labels=("le",)), "bad label"),
    (lambda: GaugeSpec(name="raaf_x", help="x.", exporters=()), "which service"),
])
def test_catalogue_entries_follow_prometheus_naming(make: Callable[[], object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        make()


def test_catalogue_names_every_metric_the_issue_lists() -> None:
    names = {s.name for s in CATALOGUE}
    assert names >= {
        # WebSocket connections and messages, channel fan-out
        "raaf_gateway_connections", "raaf_gateway_messages_received_total", "raaf_gateway_messages_sent_total",
        "raaf_gateway_slow_consumers_total", "raaf_gateway_fanout_seconds", "raaf_gateway_channel_messages_total",
        # run TTFT / inter-token latency / duration / tokens / failures by code, tool calls, handoffs
        "raaf_run_ttft_seconds", "raaf_run_inter_token_seconds", "raaf_run_duration_seconds", "raaf_run_tokens_total",
        "raaf_run_failures_total", "raaf_runs_active", "raaf_tool_calls_total", "raaf_handoffs_total",
        # job enqueue / pickup latency, duration, retries (failed attempts), dead letters, queue depth by priority
        "raaf_jobs_request_seconds", "raaf_job_pickup_seconds", "raaf_job_duration_seconds",
        "raaf_jobs_processed_total", "raaf_jobs_dead", "raaf_jobs_queue_length",
        # chat, event bus throughput and listener errors, NATS reconnects, Redis errors
        "raaf_chat_rooms", "raaf_chat_participants", "raaf_chat_messages_total", "raaf_event_bus_messages_total",
        "raaf_events_emitted_total", "raaf_event_deliveries_total", "raaf_event_listener_errors_total",
        "raaf_nats_reconnects_total", "raaf_redis_errors_total",
    }
    assert {s.name: s.kind for s in CATALOGUE if s.name.endswith("_seconds") and "time" not in s.name} == {
        s.name: "histogram" for s in CATALOGUE if s.name.endswith("_seconds") and "time" not in s.name
    }, "latencies are histograms, so people can ask for percentiles"


# ---- what the services really export -----------------------------------------------------------

@pytest.fixture
async def exported(
    nats_server: NatsServer, redis_server: ValkeyServer, mock: OpenAIMock, tmp_path: Path, start_app: StartApp
) -> AsyncIterator[dict[str, str]]:
    """Every service started in this process and the libraries, a workload through all of them, then scraped."""
    async with workload(nats_server.url, redis_server.url, mock, tmp_path, start_app) as expositions:
        yield expositions


async def test_every_service_metrics_pass_promtool_and_carry_their_catalogued_names(
    exported: dict[str, str], promtool: str
) -> None:
    assert set(exported) == set(NOT_EXPORTED_YET)
    for service, text in exported.items():
        checked = run_promtool(promtool, "check", "metrics", stdin=text)
        assert checked.returncode == 0 and not checked.stderr.strip(), f"{service}: {checked.stderr}"
        samples = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
        for spec in catalogued_for(service):
            pending = spec.name in NOT_EXPORTED_YET[service]
            present = bool(spec.sample_names & samples)
            assert present != pending, (
                f"{service}: {spec.name} is {'now exported: drop it from NOT_EXPORTED_YET' if present else 'missing'}"
            )
        strays = {n for n in samples if n.startswith("raaf_") and spec_for_sample(n) is None}
        assert not strays, f"{service} exports metrics missing from shared/metrics/catalogue.py: {sorted(strays)}"


async def test_every_dashboard_and_alert_query_names_a_metric_that_is_catalogued_and_exported(
    exported: dict[str, str]
) -> None:
    samples = {s.name for text in exported.values() for f in text_string_to_metric_families(text) for s in f.samples}
    not_yet = set().union(*NOT_EXPORTED_YET.values())
    queries = [(f"{board}: {title}", expr) for board, title, expr in dashboard_queries()]
    queries += [(f"alert {name}", expr) for name, expr in alert_queries()]
    assert len(queries) > 50
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names - PROMETHEUS_BUILTINS:
            spec = spec_for_sample(name)
            if spec is None:
                assert name in samples and not name.startswith("raaf_"), f"{where}: {name} is not catalogued"
            elif spec.name not in not_yet:
                assert name in samples, f"{where}: {name} is catalogued but no service exported it"


async def test_every_metric_the_issue_lists_moved_after_the_workload(exported: dict[str, str]) -> None:
    unmoved = [f"{exporter}: {name}{labels or ''}" for exporter, name, labels in ISSUE_METRICS
               if not sample(exported[exporter], name, **labels) > 0]
    assert not unmoved, f"still at zero (or absent) after the workload: {unmoved}"
    gateway = exported["gateway"]
    assert sample(gateway, "raaf_gateway_fanout_recipients_sum") == 2, "one message, both subscribers"
    assert sample(gateway, "raaf_gateway_fanout_recipients_count") == 1, "observed per message, not per recipient"
    assert sample(exported["events"], "raaf_event_listener_errors_total") == 2
    assert sample(exported["metrics"], "raaf_cluster_job_dead_letters_total", job_type="doomed") == 1


def test_promtool_flags_a_badly_named_metric(promtool: str) -> None:
    bad = "# HELP raaf_requests Requests.\n# TYPE raaf_requests counter\nraaf_requests 1\n"
    checked = run_promtool(promtool, "check", "metrics", stdin=bad)
    assert checked.returncode != 0 and '"_total" suffix' in checked.stderr


# ---- alert rules, Prometheus config, dashboards --------------------------------------------------

def test_alert_rules_pass_promtool_and_their_unit_tests(promtool: str) -> None:
    checked = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool(promtool, "test", "rules", str(ALERTS.parent / "alerts_test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {name for name, _ in alert_queries()}
    assert alerts >= {"RaafServiceDown", "RaafNatsDisconnected", "RaafDeadLetterGrowth", "RaafRunTTFTHigh",
                      "RaafSlowConsumerDisconnects"}


def test_prometheus_config_is_valid_and_scrapes_the_five_services(promtool: str) -> None:
    path = ALERTS.parent / "prometheus.yml"
    checked = run_promtool(promtool, "check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"] for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs == {f"raaf-{name}" for name in FACTORIES}


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    rules = [{"record": f"raaf:check:{i}", "expr": without_grafana_variables(expr)}
             for i, (_, _, expr) in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = run_promtool(promtool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboards_are_the_four_asked_for_and_match_their_generator() -> None:
    assert [p.name for p in DASHBOARDS] == ["chat.json", "jobs.json", "overview.json", "streaming-latency.json"]
    fresh = subprocess.run([sys.executable, "scripts/gen_dashboards.py", "--check"], cwd=ROOT,
                           capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", path.name
    assert len(uids) == len(DASHBOARDS)


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "raaf.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["type"] == "prometheus" and sources[0]["url"].startswith("http")


def test_ensure_promtool_is_idempotent_and_quiet() -> None:
    script = str(ROOT / "scripts" / "ensure-promtool")
    first = subprocess.run([script], capture_output=True, text=True)
    if first.returncode != 0:
        pytest.skip(f"promtool unavailable: {first.stderr.strip()}")
    second = subprocess.run([script], capture_output=True, text=True)
    assert first.stdout == second.stdout and not second.stderr
    assert shutil.which(second.stdout.strip()) or Path(second.stdout.strip()).exists()


def test_docs_list_every_catalogued_metric() -> None:
    docs = (ROOT / "docs" / "metrics.md").read_text()
    missing = [s.name for s in CATALOGUE if f"`{s.name}" not in docs]
    assert not missing, f"docs/metrics.md does not list {missing}"
