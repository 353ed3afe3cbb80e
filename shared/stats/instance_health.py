"""Readiness of known instances: ask each one's ``/readyz`` at once, bounded in time and concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Literal

import aiohttp
import msgspec

from proto.stats import ClusterHealth, InstanceHealth
from shared.stats.gather import KnownInstance


class _Readyz(msgspec.Struct):
    checks: dict[str, bool] = {}
    draining: bool = False


_readyz_decoder = msgspec.json.Decoder(_Readyz)


async def probe(session: aiohttp.ClientSession, known: KnownInstance, *, timeout: float,
                last_seen: float = 0.0) -> InstanceHealth:
    """What ``known``'s ``/readyz`` says; unreachable, slow or garbled means not ready, with the reason."""
    base = InstanceHealth(service=known.service, instance=known.instance, version=known.version,
                          http_url=known.http_url, last_seen=last_seen)
    replace = msgspec.structs.replace
    if not known.http_url:
        return replace(base, error="no HTTP endpoint registered")
    try:
        async with session.get(f"{known.http_url}/readyz", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        return replace(base, error=f"/readyz did not answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return replace(base, error=f"/readyz unreachable: {type(exc).__name__}")
    try:
        readyz = _readyz_decoder.decode(body)
    except msgspec.DecodeError:
        return replace(base, status=status, error="/readyz answered something other than its JSON")
    return replace(base, ready=status == 200, status=status, checks=readyz.checks, draining=readyz.draining)


async def probe_all(session: aiohttp.ClientSession, instances: Iterable[tuple[KnownInstance, float]], *,
                    timeout: float, concurrency: int) -> ClusterHealth:
    """Probe every ``(instance, last_seen)`` with at most ``concurrency`` requests in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(known: KnownInstance, seen: float) -> InstanceHealth:
        async with gate:
            return await probe(session, known, timeout=timeout, last_seen=seen)

    results = list(await asyncio.gather(*(one(k, seen) for k, seen in instances)))
    return summarize(results)


def summarize(results: list[InstanceHealth]) -> ClusterHealth:
    ready = sum(1 for r in results if r.ready)
    status: Literal["ok", "degraded", "down"] = (
        "ok" if results and ready == len(results) else "degraded" if ready else "down"
    )
    return ClusterHealth(status=status, instances=sorted(results, key=lambda r: (r.service, r.instance)),
                         at=time.time())
