"""The HTTP routes every service serves: ``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]


class HealthRoutes:
    """Liveness, readiness (every named check must pass) and the Prometheus exposition."""

    def __init__(self, registry: CollectorRegistry, check_timeout: float = 1.0) -> None:
        self.registry = registry
        self.checks: dict[str, ReadinessCheck] = {}
        self.check_timeout = check_timeout
        self.draining = False

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def install(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self) -> tuple[bool, dict[str, bool]]:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        return (not self.draining and all(results)), status

    async def readyz(self, request: web.Request) -> web.Response:
        ok, status = await self.ready()
        body = {"status": "ready" if ok else "not ready", "checks": status, "draining": self.draining}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _run(self, check: ReadinessCheck) -> bool:
        try:
            return await asyncio.wait_for(check(), self.check_timeout)
        except Exception:
            return False
