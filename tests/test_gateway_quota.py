"""Per-identity rates: a bucket per subject, refilled evenly, anonymous callers not counted."""

from __future__ import annotations

import pytest

from services.gateway.errors import IdentityRateLimited
from services.gateway.quota import IdentityRate
from shared.identity import Identity

ALICE, BOB = Identity.from_claims({"sub": "alice"}), Identity.from_claims({"sub": "bob"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_identity_gets_its_rate_per_minute_and_then_a_typed_error_with_retry_after() -> None:
    clock = Clock()
    rate = IdentityRate(3, what="runs", setting="GATEWAY_RUNS_PER_MINUTE", clock=clock)
    for _ in range(3):
        rate.take(ALICE)
    with pytest.raises(IdentityRateLimited, match="GATEWAY_RUNS_PER_MINUTE") as limited:
        rate.take(ALICE)
    assert limited.value.to_wire().code == "rate_limited" and limited.value.retry_after == pytest.approx(20.0)
    rate.take(BOB)  # another identity has its own bucket
    clock.now = 20.0  # one more refilled
    rate.take(ALICE)
    with pytest.raises(IdentityRateLimited):
        rate.take(ALICE)


def test_anonymous_callers_and_a_zero_rate_are_not_limited() -> None:
    rate = IdentityRate(1, what="runs", setting="X", clock=Clock())
    for _ in range(5):
        rate.take(Identity.anonymous())
    off = IdentityRate(0, what="runs", setting="X", clock=Clock())
    for _ in range(5):
        off.take(ALICE)


def test_the_buckets_kept_are_bounded() -> None:
    rate = IdentityRate(1, what="rooms", setting="X", max_identities=2, clock=Clock())
    for name in ("a", "b", "c"):
        rate.take(Identity.from_claims({"sub": name}))
    assert list(rate._buckets) == ["b", "c"]
