"""Per-service Prometheus registry with the metrics every service exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, PlatformCollector, ProcessCollector


class RuntimeMetrics:
    """Metrics of the shared runtime; services add their own to ``registry``."""

    def __init__(self, service: str, instance: str, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.info = Info("raaf_service", "The service this process runs.", registry=r)
        self.info.info({"service": service, "instance": instance, "version": version})
        self.up = Gauge("raaf_service_ready", "1 while the service is ready (NATS and Redis reachable).",
                        registry=r)
        self.nats_connected = Gauge("raaf_nats_connected", "1 while the NATS connection is up.", registry=r)
        self.nats_disconnects = Counter("raaf_nats_disconnects_total", "NATS disconnections.", registry=r)
        self.nats_reconnects = Counter("raaf_nats_reconnects_total", "NATS reconnections.", registry=r)
        self.nats_errors = Counter("raaf_nats_errors_total", "Errors reported by the NATS client.", registry=r)
        self.redis_errors = Counter("raaf_redis_errors_total", "Failed Redis commands and health checks.",
                                    registry=r)
        self.start_time = Gauge("raaf_process_start_time_seconds", "Unix time the service started.",
                                registry=r)
