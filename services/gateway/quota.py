"""Per-identity rates: how many runs or rooms one identity may start per minute on this gateway."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from services.gateway.errors import identity_rate_limited
from shared.identity import Identity


class IdentityRate:
    """A token bucket per subject (``per_minute`` at once, refilled evenly); 0 turns it off. Anonymous callers
    (auth mode ``none``: loopback or an explicit opt-in) are not counted. At most ``max_identities`` buckets
    are kept, the least recently used dropped first (a dropped bucket starts full again)."""

    def __init__(self, per_minute: int, *, what: str, setting: str, max_identities: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.what = what
        self.setting = setting
        self.max_identities = max_identities
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # subject -> (tokens, at)

    def take(self, identity: Identity) -> None:
        """Count one more; raise :class:`IdentityRateLimited` (with ``retry_after``) when none is left."""
        subject = identity.subject
        if self.per_minute <= 0 or subject is None:
            return
        now = self.clock()
        tokens, at = self._buckets.pop(subject, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * self.per_minute / 60.0)
        if tokens < 1.0:
            self._buckets[subject] = (tokens, now)
            raise identity_rate_limited(self.what, self.per_minute, self.setting,
                                      retry_after=(1.0 - tokens) * 60.0 / self.per_minute)
        self._buckets[subject] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_identities:
            self._buckets.popitem(last=False)
