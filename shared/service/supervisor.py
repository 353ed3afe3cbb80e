"""A pod's process supervisor: N worker processes of one service behind the pod's one health and metrics port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.devstack.servers import die_with_parent, free_port
from shared.metrics import catalogue as names
from shared.service.settings import RuntimeSettings

MAX_WORKERS = 64


def container_cpus(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: the container's CPU limit (cgroup v2 ``cpu.max``, rounded up) when it has
    one, else the CPUs it may be scheduled on; what ``RUN_WORKERS=0`` starts workers for."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path(cgroup_cpu_max).read_text().split()[:2]
        if quota != "max":
            return max(1, min(available, math.ceil(int(quota) / int(period))))
    return max(1, available)


def worker_count(setting: int) -> int:
    """``RUN_WORKERS``-style value to a count: 0 means one per CPU of the container (at most ``MAX_WORKERS``)."""
    return min(MAX_WORKERS, container_cpus()) if setting == 0 else setting


@dataclass(frozen=True)
class WorkerPlan:
    """What to run: ``python -m <module>`` ``count`` times, each with ``count_var=1`` so it runs as one worker."""

    module: str
    count: int
    count_var: str
    restart_delay: float = 0.5  # the first wait before restarting a worker that died; doubles per quick death
    restart_max_delay: float = 30.0
    stable_after: float = 30.0  # a worker that ran this long before dying is restarted after ``restart_delay``


@dataclass
class Worker:
    """One running worker process and where its HTTP side listens (loopback only)."""

    slot: int
    instance: str
    port: int
    proc: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Families:
    """A collector that yields families gathered elsewhere (the workers' expositions)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


class Supervisor:
    """Starts the plan's workers, restarts one that dies (with backoff), forwards SIGTERM/SIGINT for a graceful
    drain and returns when every worker has stopped. It serves the pod's ``/healthz``, ``/readyz`` (ready when
    every worker is) and ``/metrics`` (its own and each worker's, labelled ``worker``) on ``HTTP_PORT``; the
    workers listen on free loopback ports."""

    def __init__(self, name: str, runtime: RuntimeSettings, plan: WorkerPlan,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.runtime = runtime
        self.plan = plan
        self.environ = dict(os.environ if environ is None else environ)
        self.log = logging.getLogger(f"raaf.{name}.supervisor")
        self.registry = CollectorRegistry(auto_describe=True)
        self.workers_gauge = names.SUPERVISOR_WORKERS.create(self.registry)
        self.restarts = names.SUPERVISOR_RESTARTS.create(self.registry)
        self.workers: dict[int, Worker] = {}
        self.starts = 0  # worker processes started, restarts included
        self.exit_codes: dict[int, int] = {}
        self.http_port = runtime.http_port
        self._stopping = asyncio.Event()
        self._slots: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._stopped = False
        self.workers_gauge.set_function(lambda: float(len(self.workers)))

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.runtime.http_host, self.runtime.http_port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.http_port = int(server.sockets[0].getsockname()[1])
        for slot in range(self.plan.count):
            self._slots.append(asyncio.create_task(self._keep(slot), name=f"{self.name}:worker-{slot}"))
        self.log.info("supervising %d workers", self.plan.count, extra={"http_port": self.http_port})

    async def stop(self) -> None:
        """Forward SIGTERM to every worker, wait for their drain (SIGKILL after the shutdown timeout and a margin)
        and close the port; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for worker in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        if self._slots:
            _, pending = await asyncio.wait(self._slots, timeout=self.runtime.shutdown_timeout + 10)
            for worker in list(self.workers.values()):
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
            if pending:
                self.log.warning("%d workers did not stop in time: killed", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.log.info("stopped", extra={"exit_codes": self.exit_codes})

    async def run(self) -> int:
        """Start, supervise until SIGTERM or SIGINT, stop; 0 when every worker drained and exited cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            await self.stop()
        return 0 if all(code == 0 for code in self.exit_codes.values()) else 1

    def request_stop(self) -> None:
        self._stopping.set()

    # ---- workers -----------------------------------------------------------------------------

    async def _keep(self, slot: int) -> None:
        """Keep one worker running in ``slot`` until the supervisor stops."""
        delay = self.plan.restart_delay
        generation = 0
        while not self._stopping.is_set():
            worker = await self._spawn(slot, generation)
            began = time.monotonic()
            code = await worker.proc.wait()
            self.workers.pop(slot, None)
            self.exit_codes[slot] = code
            if self._stopping.is_set():
                break
            self.restarts.inc()
            if time.monotonic() - began >= self.plan.stable_after:
                delay = self.plan.restart_delay
            self.log.warning("worker %s exited with %s; restarting in %.1fs", worker.instance, code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self.plan.restart_max_delay)
            generation += 1

    async def _spawn(self, slot: int, generation: int) -> Worker:
        # A fresh instance id per start: a restarted worker never renews the lease of the one that died.
        instance = f"{self.runtime.instance_id}-w{slot}" + (f"-r{generation}" if generation else "")
        port = free_port()
        env = {**self.environ, self.plan.count_var: "1", "HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port),
               "INSTANCE_ID": instance}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", self.plan.module, env=env,
                                                    stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent)
        worker = Worker(slot, instance, port, proc)
        self.workers[slot] = worker
        self.starts += 1
        self.log.info("worker %s started", instance, extra={"pid": proc.pid, "worker_port": port})
        return worker

    # ---- the pod's HTTP side -----------------------------------------------------------------

    async def _get(self, worker: Worker, path: str) -> tuple[int, str]:
        assert self._session is not None
        try:
            async with self._session.get(worker.url + path) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return 0, ""

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "workers": len(self.workers)})

    async def _readyz(self, request: web.Request) -> web.Response:
        workers = list(self.workers.values())
        answers = await asyncio.gather(*(self._get(w, "/readyz") for w in workers))
        status = {w.instance: code == 200 for w, (code, _) in zip(workers, answers, strict=True)}
        ok = (not self._stopping.is_set() and len(workers) == self.plan.count and all(status.values()))
        body = {"status": "ready" if ok else "not ready", "workers": status, "draining": self._stopping.is_set()}
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        workers = list(self.workers.values())
        answers = await asyncio.gather(*(self._get(w, "/metrics") for w in workers))
        families: dict[str, Metric] = {}
        for worker, (code, text) in zip(workers, answers, strict=True):
            if code != 200:
                continue
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                                 family.unit))
                for sample in family.samples:
                    merged.samples.append(sample._replace(labels={**sample.labels, "worker": str(worker.slot)}))
        gathered = CollectorRegistry(auto_describe=False)
        gathered.register(_Families(families.values()))
        body = generate_latest(self.registry) + generate_latest(gathered)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
