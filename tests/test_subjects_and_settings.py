"""User-supplied names never become wildcards or other subjects; settings errors name their variable."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.kv import VALID_KEY_RE

from proto.subjects import (
    InvalidNameError,
    Subjects,
    decode_key,
    decode_token,
    encode_key,
    encode_token,
    event_pattern,
)
from services.gateway.settings import GatewaySettings
from shared.errors import SettingsError
from shared.service.settings import Env

TOKEN = re.compile(r"[A-Za-z0-9_\-~]+")


@given(st.text(min_size=1, max_size=60))
def test_any_name_encodes_to_one_safe_token_and_back(name: str) -> None:
    token = encode_token(name)
    assert TOKEN.fullmatch(token)
    assert decode_token(token) == name


@given(st.text(min_size=1, max_size=60))
def test_any_name_encodes_to_one_valid_kv_key_without_dots_and_back(name: str) -> None:
    key = encode_key(name)
    assert VALID_KEY_RE.match(key) and "." not in key
    assert decode_key(key) == name


@pytest.mark.parametrize("name", ["runner-1", "b5e0c1d2_x", "u1f2e_my-run"])
def test_a_plain_token_is_its_own_kv_key_as_it_was_before_keys_were_escaped(name: str) -> None:
    assert encode_key(name) == encode_token(name) == name


def test_a_dotted_instance_id_becomes_a_kv_key_nats_accepts() -> None:
    assert encode_key("runner.pod-1.example") == "runner=2epod-1=2eexample"
    assert encode_key("a=b") == "a=3db", "the escape character is escaped itself"


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_distinct_names_never_share_a_subject(a: str, b: str) -> None:
    if a != b:
        assert Subjects().channel(a) != Subjects().channel(b)


@pytest.mark.parametrize("name", ["general.>", "*", ">", "a b", "a.b", "room\t1", "x.*.y", ""])
def test_channel_names_with_wildcards_dots_or_spaces_stay_one_token(name: str) -> None:
    if not name:
        with pytest.raises(InvalidNameError):
            Subjects().channel(name)
        return
    subject = Subjects().channel(name)
    assert subject.count(".") == 2 and "*" not in subject and ">" not in subject and " " not in subject


def test_event_patterns_map_the_seeds_wildcards_to_nats() -> None:
    assert event_pattern("user.*") == "user.*"
    assert event_pattern("user.>") == "user.>"
    assert event_pattern("user.**") == "user.>"
    for bad in ["user.>.x", "user..login", "user.lo gin", "user.log*"]:
        with pytest.raises(InvalidNameError):
            event_pattern(bad)


def test_event_names_reject_wildcards() -> None:
    with pytest.raises(InvalidNameError):
        Subjects().event("user.*")
    assert Subjects().event("user.login") == "raaf.events.user.login"


def test_settings_read_the_seeds_variable_names() -> None:
    settings = GatewaySettings.from_env({"WEBSOCKET_PORT": "9000", "WEBSOCKET_HOST": "0.0.0.0",
                                         "WEBSOCKET_MAX_CONNECTIONS": "10", "REDIS_URL": "redis://r:1/0"})
    assert (settings.port, settings.max_connections, settings.runtime.redis_url) == (9000, 10, "redis://r:1/0")
    assert settings.runtime.http_port == 9000


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("X", "abc", lambda env: env.integer("X", 1)),
        ("X", "70000", lambda env: env.port("X", 1)),
        ("X", "nan", lambda env: env.number("X", 1.0)),
        ("X", "maybe", lambda env: env.boolean("X", True)),
        ("X", "ftp://h", lambda env: env.url("X", "nats://h", ("nats",))),
    ],
)
def test_bad_values_raise_a_settings_error_naming_the_variable(variable: str, value: str, read: object) -> None:
    with pytest.raises(SettingsError) as info:
        read(Env({variable: value}))  # type: ignore[operator]
    assert info.value.variable == variable and value in str(info.value)
