"""The metrics service: cluster-wide stats, service discovery and health across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

import aiohttp
import msgspec
import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from nats.micro.request import Request as MicroRequest
from nats.micro.service import Service as MicroService

from proto.jobs import job_lifecycle_decoder
from proto.lifecycle import ServiceStarted, ServiceStopping, lifecycle_decoder
from proto.stats import ClusterHealth, ClusterStats, InstanceRef, stats_encoder
from services.metrics.jobs import JobLifecycleMetrics
from services.metrics.registry import InstanceRegistry
from services.metrics.settings import MetricsSettings
from shared import errors
from shared.metrics import catalogue as names
from shared.nats.auth import redacted
from shared.nats.conn import barrier
from shared.service.app import App
from shared.stats.combine import combine
from shared.stats.gather import KnownInstance, discover, gather_stats
from shared.stats.instance_health import probe_all

JSON = "application/json"
# Event subscriptions share the work between metrics replicas: each event is counted once, by one of them,
# so dashboards sum the counters across replicas.
QUEUE_GROUP = "metrics"


class MetricsApp(App):
    service: ClassVar[str] = "metrics"

    def __init__(self, settings: MetricsSettings) -> None:
        super().__init__(settings)
        self.metrics_settings = settings
        self.instances = InstanceRegistry(ttl=settings.instance_ttl, max_instances=settings.max_instances)
        r = self.metrics.registry
        self.instances_gauge = names.CLUSTER_INSTANCES.create(r)
        self.ready_gauge = names.CLUSTER_INSTANCES_READY.create(r)
        self.gather_seconds = names.STATS_GATHER.create(r)
        self.unanswered = names.STATS_UNANSWERED.create(r)
        self.bus_messages = names.EVENT_BUS_MESSAGES.create(r)
        self.bus_bytes = names.EVENT_BUS_BYTES.create(r)
        self.jobs = JobLifecycleMetrics(r, max_series=settings.max_job_series)
        self.last_health: ClusterHealth | None = None
        self._session: aiohttp.ClientSession | None = None
        self._discovery: asyncio.Task[None] | None = None
        self._services_seen: set[str] = set()
        self.discovered = False  # until the first discovery round, a gather cannot know whom to wait for
        self.http_app.router.add_get("/stats", self._http_stats)
        self.http_app.router.add_get("/health", self._http_health)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession()
        await self.nc.subscribe(self.subjects.service_lifecycle_all, cb=self._on_lifecycle)
        if self.metrics_settings.observe_events:
            await self.nc.subscribe(self.subjects.events_all, queue=QUEUE_GROUP, cb=self._on_event)
        if self.metrics_settings.observe_jobs:
            await self.nc.subscribe(self.subjects.job_lifecycle_all, queue=QUEUE_GROUP, cb=self._on_job_event)
        self._discovery = self.spawn(self._discovery_loop(), name="discovery")
        await barrier(self.nc)  # the server has our subscriptions before we call ourselves started

    async def micro_endpoints(self, micro: MicroService) -> None:
        await micro.add_endpoint(name="cluster_stats", subject=self.subjects.cluster_stats,
                                 handler=self._answer_cluster_stats)
        await micro.add_endpoint(name="cluster_health", subject=self.subjects.cluster_health,
                                 handler=self._answer_cluster_health)

    async def on_stop(self) -> None:
        # Nothing here is in flight work to hand back: stop discovering, then release the HTTP client.
        if self._discovery is not None:
            self._discovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._discovery
        if self._session is not None:
            await self._session.close()

    # ---- the cluster's figures -------------------------------------------------------------------

    async def cluster_stats(self) -> ClusterStats:
        """Every instance's figures combined; known instances that stay silent are listed as unanswered."""
        if not self.nc.is_connected:
            raise errors.ConnectionError(f"NATS at {redacted(self.runtime.nats_url)} is not connected; "
                                         "cannot gather statistics")
        settings = self.metrics_settings
        # An instance that announced itself a moment ago (a reporter that just connected) may still be on its
        # way to us. The barrier's message travels behind it on our connection, and nats-py runs the earlier
        # message's callback first, so it is known before we decide whom to wait for.
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await barrier(self.nc, timeout=settings.gather_timeout)
        expected = self.instances.keys()
        started = time.monotonic()
        answers = await gather_stats(self.nc, self.subjects, timeout=settings.gather_timeout,
                                     max_instances=settings.max_instances,
                                     expected=expected if self.discovered else (), grace=settings.gather_grace)
        self.gather_seconds.observe(time.monotonic() - started)
        for answer in answers:
            self.instances.touch(answer.service, answer.instance)
        silent = expected - {(a.service, a.instance) for a in answers}
        self.unanswered.inc(len(silent))
        return combine(answers, [InstanceRef(service=s, instance=i) for s, i in silent])

    async def cluster_health(self) -> ClusterHealth:
        """Every known service instance (library reporters have no /readyz) and what its /readyz says now."""
        assert self._session is not None
        settings = self.metrics_settings
        services = [(known, seen) for known, seen in self.instances.instances() if not known.reporter]
        health = await probe_all(self._session, services, timeout=settings.health_timeout,
                                 concurrency=settings.health_concurrency)
        ready: dict[str, int] = dict.fromkeys(self._services_seen, 0)
        for instance in health.instances:
            ready[instance.service] = ready.get(instance.service, 0) + int(instance.ready)
        for service, count in ready.items():
            self.ready_gauge.labels(service).set(count)
        self.last_health = health
        return health

    async def discover_now(self) -> None:
        """One discovery round: ask every instance and reporter, forget the silent ones, refresh the gauges."""
        settings = self.metrics_settings
        found = await discover(self.nc, self.runtime.prefix, timeout=settings.gather_timeout,
                               max_instances=settings.max_instances)
        for known in found:
            self.instances.seen(known)
        for gone in self.instances.expire():
            self.log.info("instance gone", extra={"service": gone.service, "instance": gone.instance})
        self.discovered = True
        self._refresh_instance_gauge()

    # ---- internals -------------------------------------------------------------------------------

    async def _discovery_loop(self) -> None:
        interval = self.metrics_settings.discovery_interval
        while True:
            if self.nc.is_connected:
                try:
                    await self.discover_now()
                    await self.cluster_health()
                except Exception:
                    self.log.exception("discovery round failed")
            await asyncio.sleep(interval)

    def _refresh_instance_gauge(self) -> None:
        counts = self.instances.per_service()
        self._services_seen |= counts.keys()
        for service in self._services_seen:
            self.instances_gauge.labels(service).set(counts.get(service, 0))

    async def _on_lifecycle(self, msg: Msg) -> None:
        try:
            event = lifecycle_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            self.log.warning("undecodable lifecycle event on %s: %s", msg.subject, exc)
            return
        match event:
            case ServiceStarted():
                self.instances.seen(KnownInstance.announced(event))
            case ServiceStopping(service=service, instance=instance):
                self.instances.forget(service, instance)
        self._refresh_instance_gauge()

    async def _on_event(self, msg: Msg) -> None:
        self.bus_messages.inc()
        self.bus_bytes.inc(len(msg.data))

    async def _on_job_event(self, msg: Msg) -> None:
        try:
            event = job_lifecycle_decoder.decode(msg.data)
        except msgspec.DecodeError:
            self.jobs.undecodable.inc()
            return
        self.jobs.observe(event)

    async def _http_stats(self, request: web.Request) -> web.Response:
        try:
            stats = await self.cluster_stats()
        except errors.StreamingError as exc:
            return web.Response(body=stats_encoder.encode(exc.to_wire()), status=exc.http_status, content_type=JSON)
        return web.Response(body=stats_encoder.encode(stats), content_type=JSON)

    async def _http_health(self, request: web.Request) -> web.Response:
        health = await self.cluster_health()
        return web.Response(body=stats_encoder.encode(health), status=503 if health.status == "down" else 200,
                            content_type=JSON)

    async def _answer_cluster_stats(self, request: MicroRequest) -> None:
        try:
            body = stats_encoder.encode(await self.cluster_stats())
        except errors.StreamingError as exc:
            body = stats_encoder.encode(exc.to_wire())
        await request.respond(body)

    async def _answer_cluster_health(self, request: MicroRequest) -> None:
        await request.respond(stats_encoder.encode(await self.cluster_health()))
