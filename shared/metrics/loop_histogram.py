"""A Prometheus histogram for hot paths on one event loop: plain integers, no lock per observation.

prometheus-client's ``Histogram.observe`` takes a lock for the sum and another for the bucket: about 1 us,
as much as the gateway's whole fan-out of a message to one client. Code on an event loop observes from one
thread, so ``observe`` here is a bisect and two additions; the exposition (names, ``le`` labels, ``_count``,
``_sum``, ``_bucket``) is the same as prometheus-client's. A scrape from another thread may see the sum one
observation apart from the counts, never a ``_count`` that disagrees with the ``+Inf`` bucket.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class LoopHistogram(Collector):
    """An unlabelled histogram; ``observe`` must be called from one thread (the event loop's)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self._upper = tuple(float(b) for b in buckets if b != math.inf)
        if list(self._upper) != sorted(set(self._upper)) or not self._upper:
            raise ValueError(f"histogram {name!r}: buckets must be increasing")
        self._labels = [floatToGoString(b) for b in (*self._upper, math.inf)]  # type: ignore[no-untyped-call]
        self._counts = [0] * (len(self._upper) + 1)  # the last is the +Inf bucket's own share
        self._sum = 0.0
        self._created = time.time()
        if registry is not None:
            registry.register(self)

    def observe(self, amount: float) -> None:
        self._counts[bisect_left(self._upper, amount)] += 1
        self._sum += amount

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[HistogramMetricFamily | GaugeMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative = list(accumulate(self._counts))
        family.add_metric([], list(zip(self._labels, cumulative, strict=True)), sum_value=self._sum)
        yield family
        yield GaugeMetricFamily(self.name + "_created", self.documentation, value=self._created)
