"""The instances the metrics service knows: learnt from lifecycle events and discovery, forgotten when silent."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from shared.stats.gather import KnownInstance

log = logging.getLogger("raaf.metrics")

Key = tuple[str, str]


class InstanceRegistry:
    """Known instances with when each was last seen; bounded by ``max_instances``."""

    def __init__(self, *, ttl: float, max_instances: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.max_instances = max_instances
        self.clock = clock
        self._known: dict[Key, KnownInstance] = {}
        self._last_seen: dict[Key, float] = {}
        self.refused = 0  # instances not tracked because the registry was full

    def seen(self, known: KnownInstance) -> bool:
        """Record ``known`` as alive now; False when it is new and the registry is full."""
        key = (known.service, known.instance)
        if key not in self._known and len(self._known) >= self.max_instances:
            self.refused += 1
            log.warning("instance registry full (%d); not tracking %s/%s", self.max_instances, *key)
            return False
        previous = self._known.get(key)
        # A lifecycle event may lack what $SRV.PING knows (or the reverse): keep the fuller record.
        if previous is not None and known.http_url is None:
            known = previous
        self._known[key] = known
        self._last_seen[key] = self.clock()
        return True

    def touch(self, service: str, instance: str) -> None:
        """An instance we already know answered something."""
        key = (service, instance)
        if key in self._known:
            self._last_seen[key] = self.clock()

    def forget(self, service: str, instance: str) -> None:
        self._known.pop((service, instance), None)
        self._last_seen.pop((service, instance), None)

    def expire(self) -> list[KnownInstance]:
        """Forget instances not seen within ``ttl``; returns them."""
        cutoff = self.clock() - self.ttl
        gone = [k for k, seen in self._last_seen.items() if seen < cutoff]
        expired = [self._known[k] for k in gone]
        for key in gone:
            self.forget(*key)
        return expired

    def instances(self) -> list[tuple[KnownInstance, float]]:
        """Every known instance with its last-seen Unix time, ordered by service and instance."""
        return [(self._known[k], self._last_seen[k]) for k in sorted(self._known)]

    def keys(self) -> set[Key]:
        return set(self._known)

    def per_service(self) -> dict[str, int]:
        """Service instances per service (library reporters left out: they are not services)."""
        return dict(Counter(known.service for known in self._known.values() if not known.reporter))

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __len__(self) -> int:
        return len(self._known)
