"""LoopHistogram exposes exactly what prometheus-client's Histogram does for the same observations."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics.loop_histogram import LoopHistogram

BUCKETS = (0.0001, 0.001, 0.01, 0.1, 1.0)
VALUES = [0.0, 0.0001, 0.00011, 0.005, 0.01, 0.5, 1.0, 3.0, 1e-9, 0.099999]


def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(registry).decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if not s.name.endswith("_created")]


def test_the_exposition_matches_prometheus_clients_histogram() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("raaf_test_seconds", "A test.", buckets=BUCKETS, registry=theirs)
    histogram = LoopHistogram("raaf_test_seconds", "A test.", buckets=BUCKETS, registry=ours)
    assert samples(ours) == samples(theirs)
    for value in VALUES:
        reference.observe(value)
        histogram.observe(value)
    assert samples(ours) == samples(theirs)
    names = {s.name for f in text_string_to_metric_families(generate_latest(ours).decode()) for s in f.samples}
    assert names == {f"raaf_test_seconds{suffix}" for suffix in ("_bucket", "_count", "_sum", "_created")}


def test_a_name_registered_twice_is_refused_and_buckets_must_increase() -> None:
    registry = CollectorRegistry()
    LoopHistogram("raaf_once_seconds", "Once.", buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError):
        Histogram("raaf_once_seconds", "Once.", registry=registry)
    with pytest.raises(ValueError, match="increasing"):
        LoopHistogram("raaf_bad_seconds", "Bad.", buckets=(1.0, 0.5))
