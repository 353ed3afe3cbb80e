"""Build a kustomization as kustomize does, for the fields this repo uses (and refuse any other field)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "components", "configMapGenerator", "secretGenerator",
             "generatorOptions", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PriorityClass"}


def load_documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def read_kustomization(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    unsupported = set(data) - SUPPORTED
    if unsupported:
        raise AssertionError(f"{directory}/kustomization.yaml uses {sorted(unsupported)}, which this reader "
                             "does not model; extend tests/deploy/kustomize.py")
    return data


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise AssertionError(f"{relative}: kustomize only loads generator files inside {root}")
    return path


def _generated(kind: str, spec: dict[str, Any], root: Path, options: dict[str, Any]) -> Resource:
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, relative = entry.rpartition("=")
        path = _inside(root, relative)
        data[key or path.name] = path.read_text()
    for literal in spec.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    for relative in spec.get("envs", []):
        data.update(_env_file(_inside(root, relative)))
    merged = {**options, **spec.get("options", {})}
    metadata: dict[str, Any] = {"name": spec["name"]}
    for field in ("labels", "annotations"):
        if merged.get(field):
            metadata[field] = dict(merged[field])
    resource: Resource = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    if kind == "Secret":
        resource["type"] = spec.get("type", "Opaque")
        resource["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        resource["data"] = data
    return resource


def _set_images(resources: list[Resource], images: list[dict[str, str]]) -> None:
    for resource in resources:
        pod = resource.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            name = container["image"].split(":")[0]
            for image in images:
                if image["name"] == name:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"


def build(directory: Path) -> list[Resource]:
    """The resources ``kubectl kustomize directory`` yields (without generated-name hash suffixes)."""
    spec = read_kustomization(directory)
    resources: list[Resource] = []
    for entry in [*spec.get("resources", []), *spec.get("components", [])]:
        path = (directory / entry).resolve()
        resources.extend(build(path) if path.is_dir() else load_documents(path))
    options = spec.get("generatorOptions", {})
    resources += [_generated("ConfigMap", g, directory, options) for g in spec.get("configMapGenerator", [])]
    resources += [_generated("Secret", g, directory, options) for g in spec.get("secretGenerator", [])]
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    _set_images(resources, spec.get("images", []))
    return resources


def listed_files(directory: Path) -> set[Path]:
    """Every file a kustomization (and those it includes) reads."""
    spec = read_kustomization(directory)
    files = {directory / "kustomization.yaml"}
    for entry in [*spec.get("resources", []), *spec.get("components", [])]:
        path = (directory / entry).resolve()
        files |= listed_files(path) if path.is_dir() else {path}
    for generator in [*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])]:
        files |= {(directory / e.rpartition("=")[2]).resolve() for e in generator.get("files", [])}
        files |= {(directory / e).resolve() for e in generator.get("envs", [])}
    return {f.resolve() for f in files}


def kubectl_kustomize(directory: Path) -> list[Resource] | None:
    """The real kustomize's output (kubectl's built-in one), or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(resource: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return spec


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]
