"""``raaf.configure`` follows one precedence rule and rejects bad input; every wire code has its exception."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import raaf
from proto.errors import Error, ErrorCode
from raaf.config import SCHEMA, Config, configuration, configure, reset_configuration
from raaf.errors import ERROR_CLASSES, ConfigurationError, StreamingError, from_wire


@pytest.fixture(autouse=True)
def fresh_configuration() -> Iterator[None]:
    reset_configuration()
    yield
    reset_configuration()


def test_configure_overrides_environment_which_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configuration().websocket.port == 8080
    monkeypatch.setenv("WEBSOCKET_PORT", "7000")
    reset_configuration()
    assert configuration().websocket.port == 7000
    configure(websocket={"port": 9000})
    assert configuration().websocket.port == 9000


def test_configure_accepts_the_seeds_block_style() -> None:
    def block(config: Config) -> None:
        config.websocket.max_connections = 10
        config.async_.pool_size = 4
        config.chat.enable_typing_indicators = False

    configure(block)
    config = configuration()
    assert (config.websocket.max_connections, config.async_.pool_size) == (10, 4)
    assert config.to_env()["CHAT_ENABLE_TYPING_INDICATORS"] == "false"


@pytest.mark.parametrize(
    "sections",
    [
        {"websocket": {"prot": 1}},
        {"websocket": {"port": "abc"}},
        {"websocket": {"port": 70000}},
        {"background": {"workers": 0}},
        {"events": {"enable_wildcards": "yes"}},
        {"nonsense": {}},
    ],
)
def test_unknown_keys_and_bad_values_raise_and_change_nothing(sections: dict[str, dict[str, object]]) -> None:
    before = configuration().as_dict()
    with pytest.raises(ConfigurationError):
        configure(**sections)  # type: ignore[arg-type]
    assert configuration().as_dict() == before


def test_configuration_renders_the_services_environment_names() -> None:
    env = Config({}).to_env()
    for name in ["REDIS_URL", "REDIS_POOL_SIZE", "WEBSOCKET_PORT", "WEBSOCKET_HOST", "WEBSOCKET_MAX_CONNECTIONS",
                 "ASYNC_POOL_SIZE", "ASYNC_QUEUE_SIZE", "BACKGROUND_WORKERS", "BACKGROUND_RETRY_COUNT",
                 "STREAMING_CHUNK_SIZE", "STREAMING_BUFFER_SIZE", "STREAMING_TIMEOUT"]:
        assert name in env
    assert len({spec.env for keys in SCHEMA.values() for spec in keys.values()}) == len(env)


def test_every_wire_error_code_maps_to_exactly_one_exception_class() -> None:
    assert set(ERROR_CLASSES) == set(ErrorCode)
    assert len(set(ERROR_CLASSES.values())) == len(ErrorCode)
    for code, cls in ERROR_CLASSES.items():
        raised = from_wire(Error(code=code, message="m", ref="r1"))
        assert type(raised) is cls and raised.ref == "r1" and raised.to_wire().code == code


def test_seed_error_names_are_catchable_as_builtins_too() -> None:
    with pytest.raises(raaf.TimeoutError):
        raise from_wire(Error(code=ErrorCode.TIMEOUT, message="slow"))
    assert issubclass(raaf.TimeoutError, TimeoutError) and issubclass(raaf.ConnectionError, ConnectionError)
    assert issubclass(raaf.ProtocolError, StreamingError)
