"""``raaf.stats()`` and ``raaf.health()``: the seed's combined ``Streaming.stats`` for the running cluster.

Both ask the metrics service over NATS; when none runs they gather from every instance themselves.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NATS

from proto.errors import Error
from proto.stats import ClusterHealth, ClusterStats, InstanceRef, metrics_reply_decoder
from proto.subjects import Subjects
from shared.config import configuration
from shared.errors import ConnectionError, StreamingError, TimeoutError, error_from_wire
from shared.service.settings import NATS_URL, PREFIX
from shared.stats.combine import combine
from shared.stats.gather import discover, gather_stats
from shared.stats.instance_health import probe_all

MAX_INSTANCES = 10_000


async def stats(
    *,
    nats_url: str | None = None,
    prefix: str | None = None,
    timeout: float = 3.0,
    gather_timeout: float = 0.5,
    nc: NATS | None = None,
) -> ClusterStats:
    """The cluster's combined statistics (``websocket_server``, ``async_runner``, ... ``chat_system``).

    ``nats_url`` and ``prefix`` default to ``NATS_URL`` and ``RAAF_PREFIX``; pass ``nc`` to reuse a connection.
    Without a metrics service, instances are found with ``$SRV.PING`` (and library reporters on
    ``Subjects.stats_reporters``) and asked directly, waiting up to
    ``gather_timeout`` for each round. Raises :class:`raaf.errors.ConnectionError` when NATS is unreachable.
    """
    subjects = Subjects(prefix or str(configuration().platform.prefix) or PREFIX.default)
    async with _connection(nats_url, nc, timeout) as conn:
        reply = await _ask_metrics_service(conn, subjects.cluster_stats, timeout)
        if reply is None:
            known = await discover(conn, subjects.prefix, timeout=gather_timeout, max_instances=MAX_INSTANCES)
            expected = {(k.service, k.instance) for k in known}
            answers = await gather_stats(conn, subjects, timeout=gather_timeout, max_instances=MAX_INSTANCES,
                                         expected=expected)
            silent = expected - {(a.service, a.instance) for a in answers}
            return combine(answers, [InstanceRef(service=s, instance=i) for s, i in silent])
    match reply:
        case ClusterStats():
            return reply
        case _:
            raise StreamingError(f"the metrics service answered {type(reply).__name__}, not statistics")


async def health(
    *,
    nats_url: str | None = None,
    prefix: str | None = None,
    timeout: float = 3.0,
    gather_timeout: float = 0.5,
    nc: NATS | None = None,
) -> ClusterHealth:
    """Every service instance with what its ``/readyz`` says (``status``: ok, degraded or down)."""
    subjects = Subjects(prefix or str(configuration().platform.prefix) or PREFIX.default)
    async with _connection(nats_url, nc, timeout) as conn:
        reply = await _ask_metrics_service(conn, subjects.cluster_health, timeout)
        if reply is None:
            known = await discover(conn, subjects.prefix, timeout=gather_timeout, max_instances=MAX_INSTANCES)
            async with aiohttp.ClientSession() as session:
                return await probe_all(session, [(k, 0.0) for k in known if not k.reporter],
                                       timeout=gather_timeout * 2, concurrency=64)
    match reply:
        case ClusterHealth():
            return reply
        case _:
            raise StreamingError(f"the metrics service answered {type(reply).__name__}, not health")


@asynccontextmanager
async def _connection(nats_url: str | None, nc: NATS | None, timeout: float) -> AsyncIterator[NATS]:
    if nc is not None:
        yield nc
        return
    url = nats_url or str(configuration().platform.nats_url) or NATS_URL.default

    async def quiet(exc: Exception) -> None:
        """A refused connection is reported once, as the ConnectionError below."""

    try:
        # nats-py retries the first connection forever when max_reconnect_attempts is 0: try each server once.
        conn = await asyncio.wait_for(
            nats.connect(servers=[u.strip() for u in url.split(",")], connect_timeout=min(2.0, timeout),
                         allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.05,
                         error_cb=quiet),
            timeout,
        )
    except (OSError, builtins.TimeoutError, nats.errors.Error) as exc:
        raise ConnectionError(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from exc
    try:
        yield conn
    finally:
        await conn.close()


async def _ask_metrics_service(nc: NATS, subject: str, timeout: float) -> ClusterStats | ClusterHealth | None:
    """The metrics service's answer, or None when no metrics service is running."""
    try:
        msg = await nc.request(subject, b"", timeout=timeout)
    except nats.errors.NoRespondersError:
        return None
    except nats.errors.TimeoutError as exc:
        raise TimeoutError(f"the metrics service did not answer on {subject} within {timeout:g}s") from exc
    try:
        reply = metrics_reply_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        raise StreamingError(f"undecodable answer on {subject}: {exc}") from exc
    if isinstance(reply, Error):
        raise error_from_wire(reply)
    return reply
