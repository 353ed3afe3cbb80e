"""The event envelope on the wire, how foreign bodies are read, and the EVENTS_* settings."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.events import Event, event_encoder, read_event
from shared.errors import SettingsError
from shared.events.settings import EventSettings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_an_envelope_round_trips_with_any_json_data(data: Any) -> None:
    sent = Event(event="a.b", data=data, id="i1", timestamp=1.5, source="s")
    assert read_event("a.b", event_encoder.encode(sent), default_id="x", timestamp=9.0) == sent


@given(json_values)
def test_any_json_published_raw_becomes_the_data_unchanged(data: Any) -> None:
    body = msgspec.json.encode(data)
    event = read_event("user.login", body, default_id="gen-1", timestamp=2.0)
    if isinstance(data, dict) and data.get("type") == "event":
        return  # a body tagged as an envelope is read as one (or, when invalid, as data: checked below)
    assert (event.event, event.data, event.id, event.timestamp, event.source) == ("user.login", data, "gen-1",
                                                                                  2.0, None)


def test_the_envelope_is_tagged_json_any_client_can_read() -> None:
    body = event_encoder.encode(Event(event="user.login", data={"user_id": "u1"}, id="e1", timestamp=1.0))
    assert msgspec.json.decode(body) == {"type": "event", "event": "user.login", "data": {"user_id": "u1"},
                                         "id": "e1", "timestamp": 1.0}


@pytest.mark.parametrize("body", [
    b'{"event":"x","id":"1","timestamp":2}',  # envelope-shaped but untagged: data, keys and all
    b'{"type":"event","event":"x"}',  # tagged but incomplete
    b'{"type":"event_reserved"}',
    b'{"type":"other","id":"1"}',
])
def test_objects_that_are_not_valid_envelopes_are_kept_whole_as_data(body: bytes) -> None:
    event = read_event("n", body, default_id="d", timestamp=1.0)
    assert event.data == msgspec.json.decode(body) and event.id == "d"


def test_a_body_that_is_not_json_is_text_data() -> None:
    assert read_event("n", b"\xffhello", default_id="d", timestamp=1.0).data == "\ufffdhello"
    assert read_event("n", b"", default_id="d", timestamp=1.0).data is None


def test_settings_read_the_seeds_names_as_events_variables() -> None:
    settings = EventSettings.from_env({"EVENTS_MAX_LISTENERS": "50", "EVENTS_ENABLE_WILDCARDS": "false",
                                       "EVENTS_ENABLE_HISTORY": "no", "EVENTS_HISTORY_SIZE": "10",
                                       "EVENTS_MAX_AGE": "3600", "RAAF_PREFIX": "acme", "INSTANCE_ID": "node-1"})
    assert (settings.max_listeners, settings.enable_wildcards, settings.enable_history, settings.history_size,
            settings.max_age) == (50, False, False, 10, 3600.0)
    assert settings.runtime.prefix == "acme" and settings.source == "node-1"
    defaults = EventSettings.from_env({})
    assert (defaults.max_listeners, defaults.history_size, defaults.enable_wildcards) == (100, 1000, True)


@pytest.mark.parametrize(("variable", "value"), [
    ("EVENTS_MAX_LISTENERS", "0"), ("EVENTS_HISTORY_SIZE", "lots"), ("EVENTS_MAX_AGE", "-1"),
    ("EVENTS_ENABLE_HISTORY", "maybe"), ("EVENTS_STORAGE", "disk"), ("EVENTS_MAX_EVENT_SIZE", "10"),
    ("EVENTS_PENDING_LIMIT", "0"), ("EVENTS_WAIT_TIMEOUT", "nan"),
])
def test_a_bad_events_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        EventSettings.from_env({variable: value})
    assert caught.value.variable == variable
