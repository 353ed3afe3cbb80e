"""Redis clients from ``REDIS_URL``: one server, a Sentinel-managed primary, or a Redis Cluster (redis-py's own)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# Any of the clients below; the jobs engine and message queue use only what all of them offer.
RedisClient = redis.Redis | RedisCluster

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
# Every form REDIS_URL accepts (plain ones as redis-py's from_url reads them).
REDIS_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, *CLUSTER_SCHEMES)
_TIMEOUTS = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0}


class RedisUrlError(ValueError):
    """A ``REDIS_URL`` that names no usable server, Sentinel group or cluster."""


@dataclass(frozen=True)
class RedisTarget:
    """What a ``REDIS_URL`` names: ``kind`` is ``single``, ``sentinel`` or ``cluster``."""

    kind: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""  # the Sentinel's name for the primary
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``redis[s]://``, ``unix://``, ``redis[s]+sentinel://[user:pass@]h1:26379,h2:26379/SERVICE[/DB]`` or
    ``redis[s]+cluster://[user:pass@]h1:7000,h2:7001``; a bad one raises :class:`RedisUrlError`."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme not in REDIS_SCHEMES or not rest:
        raise RedisUrlError(f"expected a URL with scheme {' or '.join(REDIS_SCHEMES)}")
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        return RedisTarget("single", url.strip())
    userinfo, _, location = rest.rpartition("@")
    location, _, query = location.partition("?")
    netloc, _, path = location.partition("/")
    if query:
        raise RedisUrlError(f"{scheme}:// takes no query options (got ?{query})")
    username, _, password = (urllib.parse.unquote(p) for p in userinfo.partition(":"))
    hosts = tuple(_host_port(part, 26379 if scheme in SENTINEL_SCHEMES else 6379) for part in netloc.split(","))
    parts = [p for p in path.split("/") if p]
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if parts and parts != ["0"]:
            raise RedisUrlError("a Redis Cluster has only database 0: no path after the hosts")
        return RedisTarget("cluster", url.strip(), hosts, username=username or None, password=password or None,
                           tls=tls)
    if not parts or len(parts) > 2:
        raise RedisUrlError("a Sentinel URL names the primary's service after the hosts: .../mymaster[/db]")
    if len(parts) == 2 and not parts[1].isdigit():
        raise RedisUrlError(f"database {parts[1]!r} is not a number")
    return RedisTarget("sentinel", url.strip(), hosts, parts[0], int(parts[1]) if len(parts) == 2 else 0,
                       username or None, password or None, tls)


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    host = host.strip("[]")
    if not host:
        raise RedisUrlError(f"no host in {text!r}")
    if port and not port.isdigit():
        raise RedisUrlError(f"port {port!r} of {host} is not a number")
    number = int(port) if port else default_port
    if not 0 < number < 65536:
        raise RedisUrlError(f"port {number} of {host} is out of range")
    return host, number


def connect_redis(url: str, *, pool_size: int = 20, wait_for_connection: float | None = None) -> RedisClient:
    """A client over a bounded pool; it connects lazily and reconnects on each command.

    ``wait_for_connection``: callers wait up to that many seconds for a free pooled connection instead of failing
    (one server and Sentinel; a cluster client's pools per node always fail fast past ``pool_size``). A Sentinel
    client asks the Sentinels for the primary on every new connection and after a failover reconnects to the new
    one; a cluster client follows MOVED/ASK redirections and refreshes its slot map on its own.
    """
    target = parse_redis_url(url)
    common: dict[str, Any] = {"health_check_interval": 10, "retry_on_timeout": True, **_TIMEOUTS}
    if target.kind == "cluster":
        cluster: RedisCluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts], username=target.username,
            password=target.password, ssl=target.tls, max_connections=pool_size, **_TIMEOUTS,
        )
        return cluster
    if target.kind == "sentinel":
        # redis-py leaves its Sentinel classes unannotated.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs={"ssl": target.tls, **_TIMEOUTS}, **_TIMEOUTS)
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            target.service, sentinel, db=target.db, username=target.username, password=target.password,
            ssl=target.tls, max_connections=pool_size, health_check_interval=10, retry_on_timeout=True,
            **_TIMEOUTS,
        )
        return redis.Redis(connection_pool=pool)
    if wait_for_connection is not None:
        blocking = redis.BlockingConnectionPool.from_url(target.url, max_connections=pool_size,
                                                         timeout=wait_for_connection, **common)
        return redis.Redis(connection_pool=blocking)
    client: redis.Redis = redis.Redis.from_url(target.url, max_connections=pool_size, **common)
    return client


def register_script(client: RedisClient, script: str) -> AsyncScript:
    """A Lua script object (EVALSHA, loaded on first use) for any of the clients above."""
    if isinstance(client, redis.Redis):
        return client.register_script(script)
    # redis-py types register_script for Redis alone, though its script object serves a cluster as well.
    return AsyncScript(cast(redis.Redis, client), script)


async def eval_and_wait(client: RedisClient, script: AsyncScript, keys: Sequence[str], args: Sequence[Any],
                        replicas: int, timeout_ms: int) -> tuple[Any, int]:
    """Run ``script`` and then ``WAIT replicas timeout_ms``; returns its reply and how many replicas confirmed it.

    One pipeline keeps both on one connection, which WAIT needs: it counts the replicas that have that
    connection's writes. On a cluster the WAIT goes to the node that owns ``keys[0]``, where the script ran."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
        if isinstance(client, RedisCluster):
            pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=client.get_node_from_key(keys[0]))
        else:
            pipe.execute_command("WAIT", replicas, timeout_ms)
        reply, confirmed = await pipe.execute()
    return reply, int(confirmed)


async def eval_after_wake(client: RedisClient, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], *,
                          wake_keys: Sequence[str], timeout: float, replicas: int = 0,
                          timeout_ms: int = 0) -> tuple[Any, int]:
    """``BLPOP wake_keys timeout``, then ``script`` (then ``WAIT``, with ``replicas``), pipelined on one connection.

    Redis holds the script back until a token arrives on one of ``wake_keys`` or ``timeout`` seconds pass, then
    runs it at once, with no round trip back to us in between. Returns the script's reply and how many replicas
    confirmed it (0 without ``WAIT``). All keys must share one cluster slot."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("BLPOP", *wake_keys, timeout)
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        if replicas > 0:
            if isinstance(client, RedisCluster):
                pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=client.get_node_from_key(keys[0]))
            else:
                pipe.execute_command("WAIT", replicas, timeout_ms)
        replies = await pipe.execute(raise_on_error=False)
    reply = replies[1]
    if isinstance(reply, NoScriptError):  # a restarted or new server: load it and run it now, unblocked
        if replicas > 0:
            return await eval_and_wait(client, script, keys, args, replicas, timeout_ms)
        return await script(keys=list(keys), args=list(args)), 0
    for item in replies:
        if isinstance(item, Exception):
            raise item
    return reply, int(replies[2]) if replicas > 0 else 0
