"""Per-service Prometheus registry with the metrics every service exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from shared.metrics import catalogue as names


class RuntimeMetrics:
    """Metrics of the shared runtime; services add their own to ``registry`` (see ``shared.metrics.catalogue``)."""

    def __init__(self, service: str, instance: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.info = names.SERVICE.create(r)
        self.info.info({"service": service, "instance": instance, "version": version})
        self.up = names.SERVICE_READY.create(r)
        self.nats_connected = names.NATS_CONNECTED.create(r)
        self.nats_disconnects = names.NATS_DISCONNECTS.create(r)
        self.nats_reconnects = names.NATS_RECONNECTS.create(r)
        self.nats_errors = names.NATS_ERRORS.create(r)
        self.redis_errors = names.REDIS_ERRORS.create(r)
        self.start_time = names.PROCESS_START.create(r)
