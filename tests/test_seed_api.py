"""The seed's public API holds together: one precedence rule for every reader, one error class per wire code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import raaf
from proto.errors import ErrorCode
from raaf.config import configured_environ, reset_configuration
from raaf.errors import ERROR_CLASSES
from shared.jobs import errors as job_errors


@pytest.fixture(autouse=True)
def fresh_configuration() -> Iterator[None]:
    reset_configuration()
    yield
    reset_configuration()


def test_every_jobs_error_is_also_the_seed_class_of_its_wire_code() -> None:
    for cls in vars(job_errors).values():
        if isinstance(cls, type) and issubclass(cls, job_errors.JobError) and cls.code is not ErrorCode.INTERNAL:
            assert issubclass(cls, ERROR_CLASSES[cls.code]), cls
    with pytest.raises(raaf.NotFoundError):
        raise job_errors.JobNotFoundError.from_wire(job_errors.JobNotFoundError("j1").to_wire())


def test_configure_beats_the_environment_for_every_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://from-env:4222")
    monkeypatch.setenv("EVENTS_MAX_LISTENERS", "7")
    monkeypatch.setenv("BACKGROUND_WORKERS", "3")
    assert raaf.Runner("assistant").connection.nats_url == "nats://from-env:4222"  # env beats the default
    assert raaf.EventEmitter().settings.max_listeners == 7
    raaf.configure(platform={"nats_url": "nats://configured:4222", "prefix": "p1"}, events={"max_listeners": 9},
                   background={"workers": 4}, async_={"pool_size": 6}, streaming={"timeout": 12})
    runner = raaf.Runner("assistant")
    assert (runner.connection.nats_url, runner.connection.subjects.prefix) == ("nats://configured:4222", "p1")
    assert raaf.EventEmitter().settings.max_listeners == 9
    assert raaf.BackgroundProcessor.from_env().workers == 4
    assert raaf.BackgroundProcessor().prefix == "p1"
    pool = raaf.AsyncRunner()
    assert (pool.pool_size, pool.timeout) == (6, 12.0)
    assert configured_environ()["BACKGROUND_WORKERS"] == "4"
    monkeypatch.setenv("EVENTS_MAX_LISTENERS", "8")  # the environment is read live: a later change counts ...
    reset_configuration()
    assert raaf.EventEmitter().settings.max_listeners == 8  # ... once configure() no longer overrides it


def test_a_bad_environment_value_is_a_configuration_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    monkeypatch.setenv("STREAMING_CHUNK_SIZE", "big")
    with pytest.raises(raaf.ConfigurationError, match="STREAMING_CHUNK_SIZE"):
        raaf.StreamProcessor()
