"""The service lifecycle: connect, serve health and metrics, register with NATS micro, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, ClassVar, Protocol

from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.micro import add_service
from nats.micro.request import Request as MicroRequest
from nats.micro.service import EndpointStats
from nats.micro.service import Service as MicroService

from proto.lifecycle import ServiceStarted, ServiceStopping, lifecycle_encoder
from proto.subjects import Subjects
from shared.metrics.runtime import RuntimeMetrics
from shared.nats.conn import NatsEvents, connect_nats
from shared.nats.jetstream import ensure_stream
from shared.redisconn import RedisClient, connect_redis
from shared.service.eventloop import loop_name
from shared.service.health import HealthRoutes
from shared.service.settings import RuntimeSettings
from shared.stats.responder import StatsResponder, StatsSnapshot
from shared.tracing import TRACING, flush_tracing
from shared.version import VERSION


class ServiceSettings(Protocol):
    """Every service's frozen settings carry the shared runtime settings."""

    @property
    def runtime(self) -> RuntimeSettings: ...


class App:
    """Base of every service: subclasses set ``service`` and override the ``on_*`` hooks.

    ``start()`` connects and begins serving; ``stop()`` (idempotent) stops taking work, drains and
    releases everything; ``run()`` does both around SIGTERM/SIGINT.
    """

    service: ClassVar[str] = "service"
    uses_redis: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.runtime = settings.runtime
        self.subjects = Subjects(self.runtime.prefix)
        self.log = logging.getLogger(f"raaf.{self.service}")
        self.metrics = RuntimeMetrics(self.service, self.runtime.instance_id, VERSION)
        self.health = HealthRoutes(self.metrics.registry)
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._redis: RedisClient | None = None
        self.micro: MicroService | None = None
        self.http_app = web.Application(client_max_size=4 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_requested = asyncio.Event()
        self._stopped = False
        self._stop_lock = asyncio.Lock()
        self._started = False
        self._stats_responder: StatsResponder | None = None
        self.http_port = self.runtime.http_port
        self.metrics.up.set_function(lambda: float(self._is_serving()))

    # ---- what subclasses provide -------------------------------------------------------------

    def streams(self) -> list[StreamConfig]:
        """JetStream streams this service provisions at start (idempotently)."""
        return []

    async def on_start(self) -> None:
        """Subscribe, start consumers, add micro endpoints. NATS (and Redis) are connected."""

    async def on_stop(self) -> None:
        """Stop taking work and drain in-flight work; called once, before connections close."""

    def micro_metadata(self) -> dict[str, str]:
        return {}

    async def micro_endpoints(self, micro: MicroService) -> None:
        """Add NATS micro endpoints; called once, right after the service registered with NATS micro."""

    def stats(self) -> StatsSnapshot | Awaitable[StatsSnapshot]:
        """This instance's figures by section, in the seed's shape (sync or async; see ``proto.stats``).

        E.g. ``{"websocket_server": {"connections": 3, ...}}``; answered on ``Subjects.service_stats`` and
        summed across replicas by the metrics service. The default reports no section.
        """
        return {}

    # ---- connections -------------------------------------------------------------------------

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise RuntimeError(f"{self.service}: NATS is not connected (start() first)")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError(f"{self.service}: JetStream is not available (start() first)")
        return self._js

    @property
    def redis(self) -> RedisClient:
        if self._redis is None:
            raise RuntimeError(f"{self.service}: Redis is not connected (start() first)")
        return self._redis

    @property
    def http_url(self) -> str:
        host = self.runtime.http_host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        return f"http://{host}:{self.http_port}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start a task the service owns: it is cancelled and awaited on stop, and its crash is logged."""
        task = asyncio.create_task(coro, name=f"{self.service}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task %s crashed", task.get_name(), exc_info=task.exception())

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.metrics.start_time.set(time.time())
        self.health.add_check("nats", self._nats_ready)
        if self.uses_redis:
            self.health.add_check("redis", self._redis_ready)
        self.health.install(self.http_app)
        self._runner = web.AppRunner(self.http_app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.runtime.http_host, self.runtime.http_port,
                                 reuse_address=True)
        await self._site.start()
        self.http_port = self._bound_port()
        self._nc = await connect_nats(
            self.runtime.nats_url,
            name=f"{self.runtime.prefix}-{self.service}:{self.runtime.instance_id}",
            reconnect_wait=self.runtime.nats_reconnect_wait,
            ping_interval=self.runtime.nats_ping_interval,
            events=NatsEvents(self._on_nats_down, self._on_nats_up, self._on_nats_error),
            stop=self._stop_requested,
            auth=self.runtime.nats_auth,
        )
        self.metrics.nats_connected.set(1)
        self._js = self._nc.jetstream()
        if self.uses_redis:
            self._redis = connect_redis(self.runtime.redis_url, pool_size=self.runtime.redis_pool_size)
        for config in self.streams():
            await ensure_stream(self._js, config)
        await self.on_start()
        self._stats_responder = StatsResponder(
            service=self.service, instance=self.runtime.instance_id, version=VERSION, http_url=self.http_url,
            provider=self.stats, timeout=self.runtime.stats_timeout,
        )
        self.micro = await add_service(
            self._nc,
            name=f"{self.runtime.prefix}-{self.service}",
            version=VERSION,
            description=f"RAAF Streaming {self.service}",
            metadata={"instance": self.runtime.instance_id, "http": self.http_url, "prefix": self.runtime.prefix,
                      "service": self.service, **self.micro_metadata()},
            stats_handler=self._micro_stats_data,
        )
        # Every instance answers (its own queue group): the metrics service gathers them all at once.
        await self.micro.add_endpoint(name="stats", subject=self.subjects.service_stats,
                                      queue_group=f"stats-{self.micro.id}", handler=self._answer_stats)
        await self.micro_endpoints(self.micro)
        await self._announce(ServiceStarted(service=self.service, instance=self.runtime.instance_id,
                                           version=VERSION, http_url=self.http_url, at=time.time()))
        self.log.info("started", extra={"http": self.http_url, "nats": self.runtime.nats_url,
                                        "event_loop": loop_name()})

    async def stop(self) -> None:
        async with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_requested.set()
        self.health.draining = True
        self.log.info("stopping")
        with contextlib.suppress(Exception):
            await self._announce(ServiceStopping(service=self.service, instance=self.runtime.instance_id,
                                                 at=time.time()))
        try:
            await asyncio.wait_for(self.on_stop(), self.runtime.shutdown_timeout)
        except TimeoutError:
            self.log.warning("drain did not finish within %.0fs", self.runtime.shutdown_timeout)
        except Exception:
            self.log.exception("error while draining")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.micro is not None:
            with contextlib.suppress(Exception):
                await self.micro.stop()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), 5)
            except Exception:
                with contextlib.suppress(Exception):
                    await self._nc.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
        if TRACING.on:  # the spans of the last requests reach the collector before the process exits
            await asyncio.to_thread(flush_tracing)
        self.log.info("stopped")

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        try:
            await self.start()
            await self._stop_requested.wait()
        except ConnectionAbortedError:
            pass
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stop_requested.set()

    # ---- internals ---------------------------------------------------------------------------

    def _bound_port(self) -> int:
        assert self._runner is not None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return self.runtime.http_port

    async def _answer_stats(self, request: MicroRequest) -> None:
        assert self._stats_responder is not None
        await request.respond(await self._stats_responder.reply_bytes())

    def _micro_stats_data(self, endpoint: EndpointStats) -> object:
        # `nats micro stats` shows the figures of the last answer on the stats endpoint.
        if endpoint.name == "stats" and self._stats_responder is not None:
            return self._stats_responder.last
        return None

    async def _announce(self, event: ServiceStarted | ServiceStopping) -> None:
        if self._nc is not None and self._nc.is_connected:
            await self._nc.publish(self.subjects.service_lifecycle(self.service), lifecycle_encoder.encode(event))

    def _is_serving(self) -> bool:
        return self._nc is not None and self._nc.is_connected and not self.health.draining

    async def _nats_ready(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def _redis_ready(self) -> bool:
        if self._redis is None:
            return False
        try:
            return bool(await self._redis.ping())
        except Exception:
            self.metrics.redis_errors.inc()
            return False

    def _on_nats_down(self) -> None:
        self.metrics.nats_connected.set(0)
        self.metrics.nats_disconnects.inc()

    def _on_nats_up(self) -> None:
        self.metrics.nats_connected.set(1)
        self.metrics.nats_reconnects.inc()

    def _on_nats_error(self, exc: Exception) -> None:
        self.metrics.nats_errors.inc()
