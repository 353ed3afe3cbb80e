"""Event pattern permissions are sound: a granted pattern never reaches an event outside the grant, and a
restricted glob is never missed by a pattern that could match it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.event_grants import covers, intersects, may_see
from shared.identity import AccessPolicy, Identity, compile_pattern

tokens = st.sampled_from(["a", "b", "ab", "x"])
pattern_tokens = st.sampled_from(["a", "b", "ab", "*"])
globs = st.text(alphabet="ab.*?", min_size=1, max_size=7)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    body = draw(st.lists(pattern_tokens, min_size=1, max_size=3))
    if draw(st.booleans()):
        body.append(">")
    return ".".join(body)


@st.composite
def expansions(draw: st.DrawFn, pattern: str) -> str:
    """One event name the NATS pattern matches."""
    out: list[str] = []
    for token in pattern.split("."):
        if token == "*":
            out.append(draw(tokens))
        elif token == ">":
            out += draw(st.lists(tokens, min_size=1, max_size=3))
        else:
            out.append(token)
    return ".".join(out)


@st.composite
def globs_near(draw: st.DrawFn, pattern: str) -> str:
    """A glob shaped like ``pattern`` (so it often nearly covers it): each token kept or loosened."""
    pieces = [draw(st.sampled_from([token, "*", "?", "a*", "*b", "??", "a?"])) for token in pattern.split(".")]
    return ".".join(pieces)


def glob_matches(glob: str, name: str) -> bool:
    compiled = compile_pattern(glob)
    return compiled is not None and compiled.fullmatch(name) is not None


@settings(max_examples=500)
@given(patterns(), st.data())
def test_a_covering_grant_matches_every_event_of_the_pattern(pattern: str, data: st.DataObject) -> None:
    glob = data.draw(globs | globs_near(pattern))
    if covers(glob, pattern):
        for _ in range(10):
            assert glob_matches(glob, data.draw(expansions(pattern)))


@settings(max_examples=500)
@given(patterns(), st.data())
def test_a_pattern_that_can_match_a_restricted_glob_is_caught(pattern: str, data: st.DataObject) -> None:
    glob = data.draw(globs | globs_near(pattern))
    if not intersects(glob, pattern):
        for _ in range(10):
            assert not glob_matches(glob, data.draw(expansions(pattern)))


def test_grants_and_restrictions_decide_as_documented() -> None:
    alice = Identity.from_claims({"sub": "alice", "events": ["user.*", "inbox.{sub}"]})
    assert may_see(alice, "user.*", ()) and may_see(alice, "user.>", ()) and may_see(alice, "inbox.alice", ())
    assert not may_see(alice, ">", ()) and not may_see(alice, "inbox.*", ()) and not may_see(alice, "*.login", ())
    anyone = Identity.anonymous(AccessPolicy())
    assert may_see(anyone, ">", ()) and not may_see(anyone, ">", ("secret.*",))
    assert may_see(anyone, "user.*", ("secret.*",)) and not may_see(anyone, "*.plans", ("secret.*",))
