"""Gateway counters (plain integers on the hot path) and their Prometheus exposition, read at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.metrics import catalogue as names
from shared.metrics.loop_histogram import LoopHistogram

# Fan-out of one channel message to this gateway's subscribers: microseconds to tens of milliseconds.
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)



REFUSAL_REASONS = ("origin", "unavailable", "max_connections", "unauthorized")

class GatewayCounters:
    """Incremented inline by connections and the hub; a scrape or ``/v1/stats`` reads them."""

    __slots__ = ("bytes_sent", "channel_messages", "connections_opened", "disconnects", "errors_sent",
                 "messages_received", "messages_sent", "published", "rate_limited", "refused",
                 "slow_consumers")

    def __init__(self) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_sent = 0
        self.errors_sent = 0
        self.slow_consumers = 0
        self.rate_limited = 0
        self.published = 0
        self.channel_messages = 0
        self.connections_opened: Counter[str] = Counter()
        # Every reason starts at zero so the series exists before the first refusal (alerts use increase()).
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))
        self.disconnects: Counter[str] = Counter()


class GatewayMetrics(Collector):
    """``raaf_gateway_*`` metrics; gauges come from callbacks so idle connections cost nothing."""

    def __init__(
        self,
        registry: CollectorRegistry,
        counters: GatewayCounters,
        *,
        connections: Callable[[], dict[str, int]],
        channels: Callable[[], int],
        subscriptions: Callable[[], int],
        peers: Callable[[], int],
    ) -> None:
        self.counters = counters
        self._connections = connections
        self._channels = channels
        self._subscriptions = subscriptions
        self._peers = peers
        # Both observed once per channel message, on the hot path: no lock per observation.
        self.fanout_seconds = LoopHistogram(
            "raaf_gateway_fanout_seconds",
            "Time to write one channel message from NATS to all of this gateway's subscribers.",
            buckets=FANOUT_BUCKETS, registry=registry,
        )
        self.fanout_recipients = LoopHistogram(names.GATEWAY_FANOUT_RECIPIENTS.name,
                                               names.GATEWAY_FANOUT_RECIPIENTS.help,
                                               buckets=names.GATEWAY_FANOUT_RECIPIENTS.buckets, registry=registry)
        registry.register(self)

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        return iter(())  # unchecked collector: families are produced at collect time

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        c = self.counters
        conns = GaugeMetricFamily("raaf_gateway_connections", "Open client connections.", labels=["transport"])
        for transport, count in self._connections().items():
            conns.add_metric([transport], count)
        yield conns
        yield GaugeMetricFamily("raaf_gateway_channels", "Channels with subscribers on this gateway.",
                                value=self._channels())
        yield GaugeMetricFamily("raaf_gateway_subscriptions", "Channel subscriptions on this gateway.",
                                value=self._subscriptions())
        yield GaugeMetricFamily("raaf_gateway_peers", "Gateway replicas this one knows are alive (itself included).",
                                value=self._peers())
        yield _labelled("raaf_gateway_connections_opened", "Connections accepted.", "transport",
                        c.connections_opened)
        yield _labelled("raaf_gateway_connections_refused", "Connections refused before they started.", "reason",
                        c.refused)
        yield _labelled("raaf_gateway_disconnects", "Connections ended, by reason.", "reason", c.disconnects)
        for name, doc, value in (
            ("raaf_gateway_messages_received", "Client messages received (WebSocket frames with data).",
             c.messages_received),
            ("raaf_gateway_messages_sent", "Messages written to clients.", c.messages_sent),
            ("raaf_gateway_sent_bytes", "Bytes written to clients (frames and SSE events).", c.bytes_sent),
            ("raaf_gateway_errors_sent", "Typed errors sent to clients.", c.errors_sent),
            ("raaf_gateway_slow_consumers", "Connections cut off because their send queue was full.",
             c.slow_consumers),
            ("raaf_gateway_rate_limited", "Client messages refused by the rate limit.", c.rate_limited),
            ("raaf_gateway_published", "Channel messages published by this gateway's clients.", c.published),
            ("raaf_gateway_channel_messages", "Channel messages received from NATS and fanned out.",
             c.channel_messages),
        ):
            yield CounterMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: Counter[str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family

