"""Declarations of Prometheus metrics: name, type, labels, help and who exports them, checked once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_NAME = re.compile(r"raaf_[a-z0-9_]+")
_LABEL = re.compile(r"[a-z_][a-z0-9_]*")
# Base units only (Prometheus naming): seconds not milliseconds, bytes not kilobytes.
_NON_BASE_UNITS = ("_milliseconds", "_ms", "_microseconds", "_kilobytes", "_megabytes", "_minutes", "_hours")

# Latency buckets from 5 ms to 2 min: TTFT, pickup and durations all fit, with resolution where p99s sit.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
FAST_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COUNT_BUCKETS: tuple[float, ...] = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Jobs: pickup is expected in milliseconds, handlers run anywhere from microseconds to half an hour. Workers and
# the metrics service's cluster-wide histograms share them, so the two can be compared bucket by bucket.
JOB_PICKUP_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)
JOB_DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800,
)


@dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One metric of the platform. ``exporters`` names the services (or ``*`` = every service) whose
    ``/metrics`` carry it; ``create`` registers it on a service's registry under exactly this name."""

    kind: ClassVar[str] = "untyped"

    name: str
    help: str
    exporters: tuple[str, ...]
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"metric {self.name!r}: names are raaf_ plus lower-case letters, digits, '_'")
        if self.name.endswith(_NON_BASE_UNITS):
            raise ValueError(f"metric {self.name!r}: use base units (seconds, bytes)")
        for label in self.labels:
            if not _LABEL.fullmatch(label) or label in ("le", "quantile"):
                raise ValueError(f"metric {self.name!r}: bad label {label!r}")
        if not self.help.endswith("."):
            raise ValueError(f"metric {self.name!r}: help is a sentence ending with '.'")
        if not self.exporters:
            raise ValueError(f"metric {self.name!r}: say which service exports it")

    @property
    def sample_names(self) -> frozenset[str]:
        """Every series name this metric puts in the exposition (what PromQL may refer to)."""
        return frozenset({self.name})


@dataclass(frozen=True, kw_only=True)
class CounterSpec(MetricSpec):
    kind: ClassVar[str] = "counter"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r} must end in _total")

    def create(self, registry: CollectorRegistry) -> Counter:
        return Counter(self.name, self.help, self.labels, registry=registry)

    @property
    def sample_names(self) -> frozenset[str]:
        return frozenset({self.name, self.name.removesuffix("_total") + "_created"})


@dataclass(frozen=True, kw_only=True)
class GaugeSpec(MetricSpec):
    kind: ClassVar[str] = "gauge"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name.endswith(("_total", "_bucket", "_count", "_sum", "_created")):
            raise ValueError(f"gauge {self.name!r} must not end like a counter or histogram series")

    def create(self, registry: CollectorRegistry) -> Gauge:
        return Gauge(self.name, self.help, self.labels, registry=registry)


@dataclass(frozen=True, kw_only=True)
class HistogramSpec(MetricSpec):
    kind: ClassVar[str] = "histogram"

    buckets: tuple[float, ...] = LATENCY_BUCKETS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name.endswith("_total"):
            raise ValueError(f"histogram {self.name!r} must not end in _total")
        if list(self.buckets) != sorted(set(self.buckets)) or not self.buckets:
            raise ValueError(f"histogram {self.name!r}: buckets must be increasing")

    def create(self, registry: CollectorRegistry) -> Histogram:
        return Histogram(self.name, self.help, self.labels, registry=registry, buckets=self.buckets)

    @property
    def sample_names(self) -> frozenset[str]:
        return frozenset({self.name, *(self.name + s for s in ("_bucket", "_sum", "_count", "_created"))})


@dataclass(frozen=True, kw_only=True)
class InfoSpec(MetricSpec):
    """An info metric: constant 1 with descriptive labels; ``name`` is without the ``_info`` suffix."""

    kind: ClassVar[str] = "info"

    def create(self, registry: CollectorRegistry) -> Info:
        return Info(self.name, self.help, self.labels, registry=registry)

    @property
    def sample_names(self) -> frozenset[str]:
        return frozenset({self.name + "_info"})
