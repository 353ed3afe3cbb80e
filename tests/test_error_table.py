"""Every wire code has one HTTP status, and every error class is the ``shared.errors`` class of its code."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import services.agent_runner.errors as runner_errors
import services.gateway.errors as gateway_errors
import shared.chat.errors as chat_errors
import shared.errors as public_errors
import shared.jobs.errors as jobs_errors
from proto.errors import HTTP_STATUS, ErrorCode, http_status
from shared.errors import ERROR_CLASSES, StreamingError

ERROR_MODULES = [public_errors, jobs_errors, chat_errors, gateway_errors, runner_errors]
# Bases whose code is only a default: each subclass (or the ``code=`` it is raised with) sets the real one.
MARKERS = {StreamingError, jobs_errors.JobError, jobs_errors.RemoteJobError, chat_errors.ChatError,
           gateway_errors.GatewayError, runner_errors.RunError}


def error_classes(module: ModuleType) -> list[type[BaseException]]:
    return [cls for _, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, BaseException)]


def our_subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        if sub.__module__.split(".")[0] in ("proto", "shared", "services", "raaf"):
            found.add(sub)
        found |= our_subclasses(sub)
    return found


def test_every_wire_code_has_exactly_one_http_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert all(400 <= status <= 599 for status in HTTP_STATUS.values())
    assert (http_status(ErrorCode.CONFLICT), http_status("overloaded"), http_status("from_a_newer_peer")) == (
        409, 503, 500)


def test_the_table_cannot_be_changed_at_runtime() -> None:
    with pytest.raises(TypeError):
        HTTP_STATUS[ErrorCode.CONFLICT] = 400  # type: ignore[index]


@pytest.mark.parametrize("module", ERROR_MODULES, ids=lambda m: m.__name__)
def test_every_error_class_is_a_streaming_error_of_its_codes_class(module: ModuleType) -> None:
    classes = error_classes(module)
    assert classes
    for cls in classes:
        assert issubclass(cls, StreamingError), cls
        if cls not in MARKERS:
            assert issubclass(cls, ERROR_CLASSES[cls.code]), (cls, cls.code)


def test_there_is_one_class_per_wire_code_and_a_new_situation_is_a_kind() -> None:
    assert our_subclasses(StreamingError) == set(ERROR_CLASSES.values())
    refused = jobs_errors.queue_full("email", 10)
    assert type(refused) is public_errors.OverloadedError and refused.kind == jobs_errors.JobErrorKind.QUEUE_FULL
    assert (refused.job_type, refused.limit) == ("email", 10)


def test_an_error_answers_with_the_status_of_its_code() -> None:
    assert gateway_errors.too_many_connections(5).http_status == 429
    assert chat_errors.RoomExists("lobby").http_status == 409
    assert jobs_errors.queue_full("email", 10).http_status == 503
    assert runner_errors.run_timed_out(2.0).http_status == 504
