"""Every documented variable is read by some code, every variable the code reads is documented, and
``raaf.configure``'s keys are the settings' own declarations (so the docs' table of them is too)."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from raaf.config import SCHEMA, Key, configure, configured_environ, reset_configuration
from raaf.errors import ConfigurationError
from services.gateway.settings import GatewaySettings
from services.launcher import SERVICES
from shared.errors import SettingsError
from shared.events.settings import EventSettings
from shared.jobs.processor import BackgroundProcessor
from shared.service.settings import Setting
from tests.deploy.settings_catalog import READ_BY_DEPENDENCIES, ROOT, RecordingEnviron, env_names, names_in_source

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VARIABLE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")


@pytest.fixture(autouse=True)
def fresh_configuration() -> Iterator[None]:
    reset_configuration()
    yield
    reset_configuration()


def _tables(path: Path) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Each markdown table of ``path``: its header cells and its rows' cells."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1]) and (i == 0 or not
                                                                                     lines[i - 1].startswith("|")):
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip("|").split("|")])
            yield [cell.strip() for cell in line.strip("|").split("|")], rows


def documented() -> dict[str, str]:
    """Variable -> the doc that lists it, from the ``variable`` column of every table in the README and docs/."""
    names: dict[str, str] = {}
    for path in DOCS:
        for header, rows in _tables(path):
            if "variable" in header:
                column = header.index("variable")
                for cells in rows:
                    for name in VARIABLE.findall(cells[column] if column < len(cells) else ""):
                        names.setdefault(name, str(path.relative_to(ROOT)))
    return names


def _configuration_reads(path: Path) -> set[str]:
    """Variables a module reads through ``raaf.configuration()``: a loaded ``<section>.<key>`` attribute."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            owner = node.value
            section = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
            keys = SCHEMA.get("async" if section == "async_" else str(section), {})
            if node.attr in keys:
                names.add(keys[node.attr].env)
    return names




def read_by_code() -> set[str]:
    """Every variable read: by a service (its code and settings), by the engines' settings readers, by a lookup
    in shared/ or raaf/, or through ``raaf.configuration()`` by the Python API or an example."""
    names: set[str] = set(READ_BY_DEPENDENCIES)
    for service in SERVICES:
        names |= env_names(service)
    for reader in (EventSettings.from_env, BackgroundProcessor.from_env):
        recorder = RecordingEnviron({})
        reader(recorder)
        names |= recorder.read
    for path in [*(ROOT / "shared").rglob("*.py"), *(ROOT / "raaf").rglob("*.py"), *(ROOT / "examples").glob("*.py")]:
        names |= names_in_source(path) | _configuration_reads(path)
    return names


def test_every_documented_variable_is_read_by_some_code() -> None:
    read = read_by_code()
    unread = {name: doc for name, doc in documented().items() if name not in read}
    assert not unread, f"documented but read by nothing: {unread}"


def test_every_variable_the_code_reads_is_documented() -> None:
    undocumented = read_by_code() - set(documented())
    assert not undocumented, f"read but in no variable table of the README or docs/: {sorted(undocumented)}"


def test_the_seeds_connection_timeout_and_keepalive_are_no_variables_of_their_own() -> None:
    assert "WEBSOCKET_PORT" in read_by_code() and "WEBSOCKET_PORT" in documented()
    assert "WEBSOCKET_CONNECTION_TIMEOUT" not in read_by_code() | set(documented())


def _row(section: str, key: str, spec: Key) -> list[str]:
    return [f"`{section}.{key}`", f"`{spec.env}`", spec.kind.__name__, repr(spec.default), spec.bounds()]


def test_the_configuration_page_lists_every_key_with_its_declarations_default_and_bounds() -> None:
    tables = [rows for header, rows in _tables(ROOT / "docs/configuration.md") if header[:2] == ["key", "variable"]]
    expected = [_row(section, key, spec) for section, keys in SCHEMA.items() for key, spec in keys.items()]
    assert tables == [expected]


def test_configure_keys_reach_the_settings_that_read_their_variable() -> None:
    configure(websocket={"connection_timeout": 3, "keepalive_interval": 7}, background={"pool_checkout_timeout": 2})
    gateway = GatewaySettings.from_env(configured_environ({}))
    assert (gateway.auth_timeout, gateway.heartbeat_interval) == (3.0, 7.0)
    assert BackgroundProcessor.from_env().pool_timeout == 2.0
    assert BackgroundProcessor().pool_timeout == 2.0


READERS: list[Callable[[Mapping[str, str]], Any]] = [
    *(entry.load_settings for entry in SERVICES.values()), EventSettings.from_env, BackgroundProcessor.from_env]


def _out_of_bounds(spec: Key) -> object:
    """A value just outside the declaration's bounds (or one its check refuses)."""
    if spec.check is not None:
        return "not.one.token"
    if spec.schemes:
        return "ftp://elsewhere"
    step = 1 if spec.kind is int else 0.001
    return spec.min - step if spec.min is not None else spec.max + step  # type: ignore[operator]


BOUNDED = [(section, key, spec) for section, keys in SCHEMA.items() for key, spec in keys.items()
           if spec.min is not None or spec.max is not None or spec.check is not None or spec.schemes]


@pytest.mark.parametrize(("section", "key", "spec"), BOUNDED, ids=[f"{s}.{k}" for s, k, _ in BOUNDED])
def test_a_value_configure_refuses_is_refused_by_the_settings_that_read_its_variable(section: str, key: str,
                                                                                     spec: Key) -> None:
    bad = _out_of_bounds(spec)
    with pytest.raises(ConfigurationError, match=f"{section}.{key}"):
        configure(**{section: {key: bad}})
    refusals = []
    for reader in READERS:
        try:
            reader({spec.env: str(bad)})
        except SettingsError as error:
            refusals.append(error.variable)
    if spec is not SCHEMA["platform"]["gateway_url"]:  # read only through configuration(), by clients
        assert refusals and set(refusals) == {spec.env}


def test_a_declaration_whose_default_breaks_its_own_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="LOW_X"):
        Setting("LOW_X", 5, min=6)
    with pytest.raises(ValueError, match="HIGH_X"):
        Setting("HIGH_X", 5.0, max=4.0)
    with pytest.raises(ValueError, match="TEXT_X"):
        Setting("TEXT_X", "a", min=1)
    assert Setting("FINE_X", 5, min=5, max=5).bounds() == "5..5"
