"""Event system counters, kept as plain integers on the hot path and exposed to Prometheus at scrape time."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class EventCounters:
    """What one emitter has done; plain attributes so counting costs one addition per event."""

    __slots__ = ("__weakref__", "delivered", "dropped", "duplicates", "emit_failures", "emitted",
                 "listener_errors", "listeners", "patterns", "received", "retries")

    def __init__(self) -> None:
        self.emitted = 0  # events this emitter published
        self.received = 0  # events that arrived at this emitter's listener subscriptions
        self.delivered = 0  # listener calls that returned normally
        self.listener_errors = 0  # listener calls (or filter/map functions) that raised
        self.dropped = 0  # events NATS dropped because a pattern's buffer was full (slow listeners)
        self.duplicates = 0  # confirmed emits JetStream had already stored (same id): not stored twice
        self.emit_failures = 0  # emits that raised (not connected, not confirmed after retries, ...)
        self.retries = 0  # confirmed emits published again (same id) after no or a failed acknowledgement
        self.listeners = 0
        self.patterns = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__ if name != "__weakref__"}


_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("emitted", "raaf_events_emitted", "Events published by EventEmitter.emit."),
    ("received", "raaf_events_received", "Events that arrived at listener subscriptions."),
    ("delivered", "raaf_event_deliveries", "Listener calls that returned normally."),
    ("listener_errors", "raaf_event_listener_errors", "Listener calls (or filter/map functions) that raised."),
    ("dropped", "raaf_events_dropped", "Events dropped because a pattern's buffer was full (slow listeners)."),
    ("duplicates", "raaf_event_duplicates", "Confirmed emits of an id JetStream had already stored."),
    ("emit_failures", "raaf_event_emit_failures", "Emits that failed (not connected, not confirmed, ...)."),
    ("retries", "raaf_event_publish_retries", "Confirmed emits published again (same id) for want of an ack."),
)


class EventMetrics(Collector):
    """One per Prometheus registry: the sum over every live emitter that reports to it."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, EventMetrics]] = (
        weakref.WeakKeyDictionary())

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[EventCounters] = weakref.WeakSet()
        self.ack_seconds = Histogram(
            "raaf_event_publish_ack_seconds", "Seconds from a confirmed emit to JetStream's acknowledgement.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=None,
        )

    @classmethod
    def attach(cls, counters: EventCounters, registry: CollectorRegistry | None = None) -> EventMetrics:
        """Report ``counters`` in ``registry`` (the default registry when None)."""
        registry = REGISTRY if registry is None else registry
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls()
            registry.register(metrics)
        metrics._sources.add(counters)
        return metrics

    def collect(self) -> Iterator[Metric]:
        sources = list(self._sources)
        for attribute, name, documentation in _COUNTERS:
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], float(sum(getattr(c, attribute) for c in sources)))
            yield family
        for attribute, name, documentation in (("listeners", "raaf_event_listeners", "Registered listeners."),
                                               ("patterns", "raaf_event_patterns", "Distinct listener patterns.")):
            gauge = GaugeMetricFamily(name, documentation)
            gauge.add_metric([], float(sum(getattr(c, attribute) for c in sources)))
            yield gauge
        yield from self.ack_seconds.collect()

    def describe(self) -> Iterator[Metric]:
        # Names are fixed, so duplicate registration is caught at register time.
        return self.collect()
