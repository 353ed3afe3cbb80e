"""What each service reads from the environment, learned from the settings code itself (so it grows with it)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

from services.launcher import SERVICES, ServiceEntry
from shared.service.app import ServiceSettings
from shared.service.settings import Env

ROOT = Path(__file__).resolve().parents[2]

# Env's reading methods (string, integer, port, url, ...): a call ``<x>.<method>("NAME", ...)`` reads NAME.
ENV_METHODS = frozenset(
    name for name, member in inspect.getmembers(Env, inspect.isfunction) if not name.startswith("_")
)


class RecordingEnviron(Mapping[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._data = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._data[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def names_in_source(path: Path) -> set[str]:
    """Names a module reads: ``env.<method>("NAME")``, ``os.environ.get/[...]``, ``os.getenv``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = _string_arg(node)
            attr = node.func.attr
            if name is None:
                continue
            if attr in ENV_METHODS or attr == "getenv" or (attr == "get" and "environ" in ast.unparse(node.func)):
                names.add(name)
        elif (isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value)
              and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            names.add(node.slice.value)
    return names


def _package_dir(entry: ServiceEntry) -> Path:
    return ROOT.joinpath(*entry.module.split("."))


def _shared_runtime() -> list[Path]:
    """The shared service runtime's code (not the engines a service may or may not use: events, jobs, mock)."""
    engines = {"events", "jobs", "openai_mock", "config.py", "chunks.py", "stream_processor.py", "tools.py"}
    return [p for p in (ROOT / "shared").rglob("*.py") if not engines & set(p.relative_to(ROOT / "shared").parts)]


# Variables users set that a dependency reads on our behalf (so no code of ours names them).
READ_BY_DEPENDENCIES = {"OTEL_TRACES_SAMPLER_ARG": "the OpenTelemetry SDK's sampler"}


@cache
def env_names(service: str) -> frozenset[str]:
    """Every variable ``service`` reads: its package's and the shared runtime's code, plus what from_env looked up."""
    entry = SERVICES[service]
    sources = [*_package_dir(entry).rglob("*.py"), *_shared_runtime()]
    names: set[str] = set()
    for path in sources:
        names |= names_in_source(path)
    recorder = RecordingEnviron({})
    entry.load_settings(recorder)
    return frozenset(names | recorder.read)


def load(service: str, environ: Mapping[str, str]) -> ServiceSettings:
    """The service's settings exactly as it would build them from ``environ`` (raises SettingsError)."""
    return SERVICES[service].load_settings(environ)


def defaults(service: str) -> ServiceSettings:
    return load(service, {})



def nats_drain_timeout() -> float:
    """The seconds App.stop() gives the NATS drain after on_stop (a literal in shared/service/app.py)."""
    for node in ast.walk(ast.parse((ROOT / "shared/service/app.py").read_text())):
        if (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("wait_for") and len(node.args) == 2
                and "drain()" in ast.unparse(node.args[0]) and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, int | float)):
            return float(node.args[1].value)
    raise AssertionError("App.stop() no longer bounds the NATS drain with wait_for(..., N)")
