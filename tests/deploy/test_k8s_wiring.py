"""The Kubernetes resources fit the code and each other: env, ports, probes, commands, drain, selectors, scaling."""

from __future__ import annotations

import base64
import tomllib
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.gateway.settings import GatewaySettings
from services.launcher import SERVICES
from shared import access
from shared.errors import SettingsError
from shared.nats.permissions import password_variable
from shared.service.app import ServiceSettings
from shared.service.health import HealthRoutes
from tests.deploy import kustomize
from tests.deploy.dockerfile import parse
from tests.deploy.kustomize import Resource, find, pod_spec
from tests.deploy.settings_catalog import READ_BY_DEPENDENCIES, ROOT, env_names, load, nats_drain_timeout

K8S = ROOT / "k8s"
RESOURCES = kustomize.build(K8S)
SCALED_OUT = {"gateway", "agent-runner"}


def _routes() -> set[str]:
    app = web.Application()
    HealthRoutes(CollectorRegistry()).install(app)
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def _container(name: str) -> dict[str, Any]:
    (container,) = pod_spec(find(RESOURCES, "Deployment", name))["containers"]
    assert isinstance(container, dict)
    return container


def _lookup(kind: str, name: str) -> dict[str, str]:
    resource = find(RESOURCES, kind, name)
    data: dict[str, str] = resource.get("data", {})
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in data.items()}
    return data


def container_env(container: dict[str, Any], pod_name: str = "pod-0") -> dict[str, str]:
    """The environment Kubernetes gives the container (envFrom first, then env, which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_lookup("ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(_lookup("Secret", source["secretRef"]["name"]))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name"
            env[item["name"]] = pod_name
        elif "configMapKeyRef" in ref:
            env[item["name"]] = _lookup("ConfigMap", ref["configMapKeyRef"]["name"])[ref["configMapKeyRef"]["key"]]
        else:
            env[item["name"]] = _lookup("Secret", ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
    return env


def _settings(name: str) -> ServiceSettings:
    env = container_env(_container(name))
    assert env["NATS_USER"] == name and env["NATS_PASSWORD"] == "", "its own NATS user; no password committed"
    env["NATS_PASSWORD"] = "p" * 32  # what the overlay's Secret sets; without it the service refuses to start
    if name == "gateway":
        assert env["GATEWAY_AUTH_MODE"] == "jwt" and env["GATEWAY_JWT_SECRET"] == "", "no secret committed"
        env["GATEWAY_JWT_SECRET"] = "x" * 32  # what an overlay sets; without it the gateway refuses to start
        settings = load(name, env)
        assert isinstance(settings, GatewaySettings)
        settings.check_exposure()
        return settings
    return load(name, env)


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pods(selector: dict[str, str]) -> list[Resource]:
    return [r for r in RESOURCES if r["kind"] in ("Deployment", "StatefulSet")
            and _selects(selector, r["spec"]["template"]["metadata"]["labels"])]


def test_a_deployment_per_service_and_nothing_else() -> None:
    assert {r["metadata"]["name"] for r in RESOURCES if r["kind"] == "Deployment"} == set(SERVICES)


@pytest.mark.parametrize("name", list(SERVICES))
def test_container_runs_the_service_by_name_from_the_image(name: str) -> None:
    container = _container(name)
    dockerfile = parse(ROOT / "Dockerfile")
    assert "command" not in container, "the image's ENTRYPOINT (the launcher) must stay"
    assert container["args"] == [name]
    (entrypoint,) = dockerfile.final.all("ENTRYPOINT")
    assert entrypoint.exec_form() == ["python", "-m", "services"]
    (image,) = kustomize.read_kustomization(K8S)["images"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    assert image["newTag"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("name", list(SERVICES))
def test_environment_is_read_by_the_code_and_yields_valid_settings(name: str) -> None:
    env = container_env(_container(name))
    unknown = set(env) - env_names(name) - set(READ_BY_DEPENDENCIES)
    assert not unknown, f"{name} is given variables its code never reads: {sorted(unknown)}"
    runtime = _settings(name).runtime  # raises SettingsError, naming the variable, on any bad value
    assert runtime.instance_id == "pod-0", "each pod reports its own name as INSTANCE_ID"
    nats_set = find(RESOURCES, "StatefulSet", "nats")
    assert runtime.jetstream_replicas == nats_set["spec"]["replicas"] == 3
    assert runtime.nats_url.split(",") == _every_pod(nats_set, "client"), "NATS_URL names every NATS server"
    redis_set = find(RESOURCES, "StatefulSet", "redis")
    assert runtime.redis_url == ("redis+sentinel://" + ",".join(
        u.removeprefix("redis://") for u in _every_pod(redis_set, "sentinel", scheme="redis")) + "/mymaster/0")


@pytest.mark.parametrize("name", list(SERVICES))
def test_tracing_is_off_until_an_endpoint_is_set_and_each_deployment_names_its_service(name: str) -> None:
    env = container_env(_container(name))
    tracing = _settings(name).runtime.tracing
    assert not tracing.enabled, "no collector is assumed: OTEL_EXPORTER_OTLP_ENDPOINT stays empty by default"
    assert (tracing.service_name, tracing.sampler) == (f"raaf-{name}", "parentbased_traceidratio")
    assert 0 < float(env["OTEL_TRACES_SAMPLER_ARG"]) <= 1
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://otel-collector.observability:4318"  # what an overlay sets
    on = load(name, {**env, "GATEWAY_JWT_SECRET": "x" * 32, "NATS_PASSWORD": "p" * 32}).runtime.tracing
    assert on.enabled and on.endpoint == "http://otel-collector.observability:4318/v1/traces"


def _every_pod(stateful_set: Resource, port_name: str, *, scheme: str = "nats") -> list[str]:
    """``scheme://<pod>.<headless service>:<port>`` for each of the set's pods, the port found by its name."""
    headless = find(RESOURCES, "Service", stateful_set["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and _pods(headless["spec"]["selector"]) == [stateful_set]
    (port,) = [p["port"] for p in headless["spec"]["ports"] if p["name"] == port_name]
    name = stateful_set["metadata"]["name"]
    return [f"{scheme}://{name}-{i}.{headless['metadata']['name']}:{port}"
            for i in range(stateful_set["spec"]["replicas"])]


def test_only_the_agent_runner_gets_the_openai_secret() -> None:
    holders = [n for n in SERVICES if any("secretRef" in s for s in _container(n).get("envFrom", []))]
    assert holders == ["agent-runner"]
    secret = _lookup("Secret", "raaf-openai")
    assert set(secret) == {"OPENAI_API_KEY", "OPENAI_BASE_URL"} and not any(secret.values()), "no key committed"
    settings = _settings("agent-runner")
    assert getattr(settings, "openai_api_key", None) is None, "an empty key means the offline demo model"


@pytest.mark.parametrize("name", list(SERVICES))
def test_ports_probes_and_scrape_annotations_match_the_service(name: str) -> None:
    container = _container(name)
    port = _settings(name).runtime.http_port
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [port]
    routes = _routes()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert _port(container, get["port"]) == port
    annotations = find(RESOURCES, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in routes
    service = find(RESOURCES, "Service", name)
    (service_port,) = service["spec"]["ports"]
    assert service_port["name"] == "http" and _port(container, service_port["targetPort"]) == port


@pytest.mark.parametrize("name", list(SERVICES))
def test_termination_grace_covers_prestop_and_the_drain(name: str) -> None:
    pod = pod_spec(find(RESOURCES, "Deployment", name))
    container = _container(name)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    runtime = _settings(name).runtime
    assert pod["terminationGracePeriodSeconds"] > pre_stop + runtime.shutdown_timeout + nats_drain_timeout()


@pytest.mark.parametrize("name", list(SERVICES))
def test_pods_run_non_root_read_only_with_resources(name: str) -> None:
    pod = pod_spec(find(RESOURCES, "Deployment", name))
    container = _container(name)
    (user,) = parse(ROOT / "Dockerfile").final.all("USER")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user.args.split(":")[0]
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_the_statefulsets_run_non_root_too() -> None:
    for name in ("nats", "redis"):
        pod = pod_spec(find(RESOURCES, "StatefulSet", name))
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_gateway_and_agent_runner_autoscale_and_the_rest_have_fixed_replicas() -> None:
    hpas = {r["spec"]["scaleTargetRef"]["name"]: r for r in RESOURCES if r["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == SCALED_OUT
    for name, hpa in hpas.items():
        deployment = find(RESOURCES, "Deployment", name)
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        assert "replicas" not in deployment["spec"], "a fixed count would fight the autoscaler on every apply"
        metrics = {m["resource"]["name"] for m in hpa["spec"]["metrics"]}
        requests = _container(name)["resources"]["requests"]
        assert metrics <= set(requests), "utilization targets need requests"
    for name in set(SERVICES) - SCALED_OUT:
        # Chat, scheduler and metrics run side by side (tests/test_chat_replicas.py, tests/test_jobs_replicas.py).
        assert find(RESOURCES, "Deployment", name)["spec"]["replicas"] >= 2, name


def test_every_workload_has_a_disruption_budget_selecting_exactly_it() -> None:
    budgets = [r for r in RESOURCES if r["kind"] == "PodDisruptionBudget"]
    covered = set()
    for budget in budgets:
        selected = _pods(budget["spec"]["selector"]["matchLabels"])
        assert len(selected) == 1, budget["metadata"]["name"]
        covered.add(selected[0]["metadata"]["name"])
        assert budget["spec"].get("maxUnavailable") == 1
    assert covered == set(SERVICES) | {"nats", "redis"}


def test_every_service_selects_pods_that_have_its_target_ports() -> None:
    for service in (r for r in RESOURCES if r["kind"] == "Service"):
        workloads = _pods(service["spec"]["selector"])
        assert workloads, f"Service {service['metadata']['name']} selects nothing"
        for workload in workloads:
            ports = {p.get("name") for c in pod_spec(workload)["containers"] for p in c["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_ingress_routes_to_the_gateway_with_websocket_and_sse_friendly_timeouts() -> None:
    ingress = find(RESOURCES, "Ingress", "gateway")
    (rule,) = ingress["spec"]["rules"]
    for path in rule["http"]["paths"]:
        backend = path["backend"]["service"]
        service = find(RESOURCES, "Service", backend["name"])
        assert backend["name"] == "gateway" and backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = ingress["metadata"]["annotations"]
    heartbeat = getattr(_settings("gateway"), "heartbeat_interval", 30.0)
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(annotations[f"nginx.ingress.kubernetes.io/{key}"]) >= 10 * heartbeat
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off", "SSE must not be buffered"


def test_the_servicemonitor_scrapes_exactly_the_five_services() -> None:
    (monitor,) = [r for r in kustomize.build(K8S / "prometheus-operator") if r["kind"] == "ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = {r["metadata"]["name"] for r in RESOURCES
                if r["kind"] == "Service" and _selects(selector, r["metadata"]["labels"])}
    assert selected == set(SERVICES)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for name in SERVICES:
        assert endpoint["port"] in {p["name"] for p in find(RESOURCES, "Service", name)["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [kustomize.read_kustomization(K8S)["namespace"]]
    # Jobs are named raaf-<service> as in deploy/prometheus/prometheus.yml, which the alerts and dashboards select.
    (relabel,) = endpoint["relabelings"]
    assert relabel["sourceLabels"] == ["__meta_kubernetes_service_name"] and relabel["targetLabel"] == "job"
    compose_jobs = {job["job_name"] for job in
                    yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"]}
    assert {relabel["replacement"].replace("$1", name) for name in SERVICES} == compose_jobs


def test_only_the_services_reach_redis() -> None:
    policy = find(RESOURCES, "NetworkPolicy", "redis")
    assert _pods(policy["spec"]["podSelector"]["matchLabels"]) == [find(RESOURCES, "StatefulSet", "redis")]
    services, peers = policy["spec"]["ingress"]
    (peer,) = services["from"]
    allowed = {r["metadata"]["name"] for r in _pods(peer["podSelector"]["matchLabels"])}
    assert allowed == set(SERVICES)
    (peer,) = peers["from"]
    assert _pods(peer["podSelector"]["matchLabels"]) == [find(RESOURCES, "StatefulSet", "redis")], "each other"
    for rule in (services, peers):
        assert {p["port"] for p in rule["ports"]} == {6379, 26379}, "Valkey and its Sentinels"


def test_each_service_reads_its_own_nats_password_from_the_secret() -> None:
    for name in SERVICES:
        (ref,) = [e["valueFrom"]["secretKeyRef"] for e in _container(name)["env"] if e["name"] == "NATS_PASSWORD"]
        assert ref == {"name": "raaf-nats-auth", "key": password_variable(name)}
        with pytest.raises(SettingsError, match="NATS_PASSWORD"):
            load(name, container_env(_container(name)))  # the empty committed Secret: refused at start


def test_only_the_services_reach_the_nats_client_port() -> None:
    policy = find(RESOURCES, "NetworkPolicy", "nats")
    nats_set = find(RESOURCES, "StatefulSet", "nats")
    assert _pods(policy["spec"]["podSelector"]["matchLabels"]) == [nats_set]
    client_port_peers = set()
    for rule in policy["spec"]["ingress"]:
        if 4222 in {p["port"] for p in rule["ports"]}:
            (peer,) = rule["from"]
            assert peer["podSelector"], "no rule opens the client port to every pod"
            client_port_peers |= {r["metadata"]["name"] for r in _pods(peer["podSelector"]["matchLabels"])}
    assert client_port_peers == {*SERVICES, "nats"}


def test_the_ingress_exposes_the_client_routes_and_not_health_or_metrics() -> None:
    (rule,) = find(RESOURCES, "Ingress", "gateway")["spec"]["rules"]
    paths = rule["http"]["paths"]

    def exposed(route: str) -> bool:
        return any(route == p["path"] if p["pathType"] == "Exact" else
                   route == p["path"] or route.startswith(p["path"].rstrip("/") + "/") for p in paths)

    client = {path for (_, path), rule_ in access.ROUTES.items() if rule_.kind != "service"}
    assert {route for route in client if not exposed(route)} == set()
    assert not any(exposed(route) for route in ("/healthz", "/readyz", "/metrics"))
