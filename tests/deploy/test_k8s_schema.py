"""Every manifest in k8s/, and every resource its kustomization yields, validates against the Kubernetes schemas."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.settings_catalog import ROOT

K8S = ROOT / "k8s"
COMPONENTS = [K8S / "prometheus-operator"]
# The oldest Kubernetes still commonly run and the newest the validator ships: strict (unknown fields fail).
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
SCHEMAS = ROOT / "tests/schemas"
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "monitoring.coreos.com_servicemonitors.yaml",
        ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "monitoring.coreos.com_prometheusrules.yaml"}
DASHBOARDS = ROOT / "deploy/grafana"


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as ``kubectl apply --validate=strict`` does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRDS[(api_version, kind)].read_text())
    version = api_version.split("/")[1]
    (entry,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = _strict(entry["schema"]["openAPIV3Schema"])
    # The CRD leaves metadata to the API server; check it is at least an object with a name.
    schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return jsonschema.Draft7Validator(schema)


def validate(resource: dict[str, Any]) -> None:
    key = (resource["apiVersion"], resource["kind"])
    if key in CRDS:
        errors = list(_crd_validator(*key).iter_errors(resource))
        assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
        return
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            raise AssertionError(f"{resource['kind']}/{resource['metadata'].get('name')} @ {version}: "
                                 f"{path}: {exc.message}") from None


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def test_there_are_manifests() -> None:
    assert len(manifest_files()) >= 10


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_file_validates(path: Path) -> None:
    documents = kustomize.load_documents(path)
    assert documents
    for document in documents:
        validate(document)


def test_every_manifest_and_generator_input_is_listed_by_a_kustomization() -> None:
    listed = kustomize.listed_files(K8S)
    for component in COMPONENTS:
        listed |= kustomize.listed_files(component)
    on_disk = {p.resolve() for p in K8S.rglob("*") if p.is_file()}
    assert on_disk - listed == set(), "files in k8s/ that no kustomization deploys"


def test_every_resource_the_kustomization_builds_validates() -> None:
    resources = kustomize.build(K8S)
    kinds = {r["kind"] for r in resources}
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "Ingress"} <= kinds
    for resource in resources:
        validate(resource)
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == "raaf"


def test_the_operator_component_validates_against_the_operator_crds() -> None:
    resources = kustomize.build(COMPONENTS[0])
    assert sorted(r["kind"] for r in resources) == ["PrometheusRule", "ServiceMonitor"]
    for resource in resources:
        validate(resource)
    (monitor,) = [r for r in resources if r["kind"] == "ServiceMonitor"]
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(AssertionError, match="intervall"):
        validate(broken)


def test_the_validator_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(kustomize.find(kustomize.build(K8S), "Deployment", "gateway"))
    kustomize.pod_spec(deployment)["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate(deployment)


def _names(resources: list[dict[str, Any]], hashed: set[str]) -> set[tuple[str, str]]:
    out = set()
    for r in resources:
        name = r["metadata"]["name"]
        base = next((h for h in hashed if name.startswith(h + "-")), name)
        out.add((r["kind"], base))
    return out


def test_real_kustomize_builds_the_same_resources_and_they_validate(tmp_path: Path) -> None:
    built = kustomize.kubectl_kustomize(K8S)
    if built is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; the reader above covers the build")
    ours = kustomize.build(K8S)
    hashed = {g["name"] for g in kustomize.read_kustomization(K8S).get("secretGenerator", [])}
    assert _names(built, hashed) == _names(ours, hashed)
    for resource in built:
        validate(resource)
    # The opt-in component, as a user's overlay would add it.
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [relative], "components": [f"{relative}/{c.name}" for c in COMPONENTS]}))
    with_monitor = kustomize.kubectl_kustomize(overlay)
    assert with_monitor is not None
    monitors = [r for r in with_monitor if r["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1 and monitors[0]["metadata"]["namespace"] == "raaf"
    for resource in with_monitor:
        validate(resource)


def test_the_dashboards_configmap_carries_every_dashboard_within_the_apply_limit() -> None:
    configmap = kustomize.find(kustomize.build(K8S), "ConfigMap", "raaf-grafana-dashboards")
    on_disk = {p.name: p.read_text() for p in (DASHBOARDS / "dashboards").glob("*.json")}
    assert on_disk, "no dashboards in deploy/grafana/dashboards"
    assert configmap["data"] == on_disk, "list every dashboard in deploy/grafana/kustomization.yaml"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    # Client-side kubectl apply copies the object into an annotation limited to 256 KiB.
    assert sum(len(v.encode()) for v in on_disk.values()) < 200 * 1024


def test_the_prometheusrule_is_the_compose_alert_rules() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts/sync-k8s-alerts"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    (rule,) = [r for r in kustomize.build(COMPONENTS[0]) if r["kind"] == "PrometheusRule"]
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
