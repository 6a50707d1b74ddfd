"""Choose the room log and the bus by URL: ``memory://``, ``redis://host:port/db`` or
``redis+cluster://host:port,host:port,…`` (server/node/cluster.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .bus import Bus, MemoryBus, RedisBus
from .log import MemoryLog, RedisLog, RoomLog


@dataclass
class Backends:
    """The room log, the bus, and the registry of live nodes (for presence after a crash)."""

    url: str
    log: RoomLog
    bus: Bus
    redis: Any = None
    _beats: dict[str, float] = field(default_factory=dict)

    async def heartbeat(self, node: str, ttl: float) -> None:
        """Say ``node`` is alive for the next ``ttl`` seconds."""
        if self.redis is not None:
            await self.redis.set(f"hc:node:{node}", b"1", px=int(ttl * 1000))
        else:
            self._beats[node] = time.monotonic() + ttl

    def beater(self) -> tuple[Callable[[str, float], None], Callable[[], None]]:
        """A blocking ``beat(node, ttl)`` for the heartbeat thread (server/node/heartbeat.py),
        on a Redis connection of its own, and the function that closes that connection."""
        if self.redis is None:

            def remember(node: str, ttl: float) -> None:
                self._beats[node] = time.monotonic() + ttl  # one dict store: atomic

            return remember, lambda: None
        clients: list[Any] = []  # made by the thread's first beat: a cluster client connects

        def beat(node: str, ttl: float) -> None:
            if not clients:
                clients.append(_blocking_client(self.url))
            clients[0].set(f"hc:node:{node}", b"1", px=int(ttl * 1000))

        def close() -> None:
            while clients:
                clients.pop().close()

        return beat, close

    async def alive(self, nodes: set[str]) -> set[str]:
        """Which of ``nodes`` have a heartbeat that has not expired."""
        names = sorted(nodes)
        if not names:
            return set()
        if self.redis is not None:
            pipe = self.redis.pipeline(transaction=False)
            for n in names:
                pipe.exists(f"hc:node:{n}")
            return {n for n, ok in zip(names, await pipe.execute(), strict=True) if ok}
        now = time.monotonic()
        return {n for n in names if self._beats.get(n, 0) > now}

    async def close(self) -> None:
        # Each part closed whatever the one before raised: a bus link that fails to close
        # (its master just died) must not leave the cluster client's connections open.
        try:
            await self.bus.close()
        finally:
            try:
                await self.log.close()
            finally:
                if urlsplit(self.url).scheme == "redis+cluster":
                    from .cluster import close_cluster

                    await close_cluster(self.redis)
                elif self.redis is not None:
                    await self.redis.aclose()


BEAT_TIMEOUT = 2.0
"""Seconds a heartbeat's connect or write may take before that beat is given up."""


def _blocking_client(url: str) -> Any:
    """A blocking redis-py client for ``url`` (one Redis or a cluster), for a thread."""
    import redis

    if urlsplit(url).scheme != "redis+cluster":
        return redis.Redis.from_url(
            url, socket_timeout=BEAT_TIMEOUT, socket_connect_timeout=BEAT_TIMEOUT
        )
    from redis.cluster import ClusterNode, RedisCluster

    from .cluster import parse_url

    nodes, options = parse_url(url)
    auth = {k: options[k] for k in ("username", "password") if options.get(k)}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
        socket_timeout=BEAT_TIMEOUT,
        socket_connect_timeout=BEAT_TIMEOUT,
        **auth,
    )


def open_backends(url: str) -> Backends:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return Backends(url, MemoryLog(), MemoryBus())
    if scheme in ("redis", "rediss", "unix"):
        import redis.asyncio as aioredis  # imported lazily: memory:// needs no Redis client

        # A blocking pool: a burst of appends (a vote storm) waits for a free connection
        # instead of failing with "Too many connections" past redis-py's default of 100.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=False, health_check_interval=10, max_connections=128, timeout=10
        )
        client = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        return Backends(url, RedisLog(client), RedisBus(client), client)
    if scheme == "redis+cluster":
        from .cluster import open_cluster

        cluster, room_log, bus = open_cluster(url)
        return Backends(url, room_log, bus, cluster)
    raise ValueError(
        f"unknown backend {url!r}: use memory://, redis://host:port/db "
        "or redis+cluster://host:port,host:port"
    )
