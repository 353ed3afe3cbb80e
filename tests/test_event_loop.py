"""RAAF_EVENT_LOOP: services run on uvloop where it is installed, on asyncio's loop when asked, and say which."""

from __future__ import annotations

import asyncio
import sys

import pytest

from shared.errors import EventLoopUnavailable, SettingsError
from shared.service.eventloop import loop_name, resolve, run
from shared.service.settings import Env, RuntimeSettings


async def running_loop() -> tuple[str, str]:
    await asyncio.sleep(0)
    return loop_name(), type(asyncio.get_running_loop()).__module__


def test_auto_means_uvloop_where_it_is_installed() -> None:
    assert resolve("auto") == "uvloop"
    assert RuntimeSettings.from_env(Env({}), default_http_port=0).event_loop == "auto"


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_run_runs_the_coroutine_on_the_loop_named(choice: str) -> None:
    name, module = run(running_loop(), choice)
    assert name == choice and module.startswith(choice)


def test_without_uvloop_auto_falls_back_and_asking_for_it_is_a_settings_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an interpreter without uvloop sees
    assert resolve("auto") == "asyncio"
    assert run(running_loop(), "auto")[0] == "asyncio"
    with pytest.raises(EventLoopUnavailable):
        run(running_loop(), "uvloop")
    with pytest.raises(SettingsError) as info:
        RuntimeSettings.from_env(Env({"RAAF_EVENT_LOOP": "uvloop"}), default_http_port=0)
    assert info.value.variable == "RAAF_EVENT_LOOP" and "not installed" in str(info.value)


def test_an_unknown_loop_is_a_settings_error_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        RuntimeSettings.from_env(Env({"RAAF_EVENT_LOOP": "trio"}), default_http_port=0)
    assert info.value.variable == "RAAF_EVENT_LOOP" and "trio" in str(info.value)
