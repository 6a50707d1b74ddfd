"""Choose the room log and the bus by URL: ``memory://`` or ``redis://host:port/db``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .bus import Bus, MemoryBus, RedisBus
from .log import MemoryLog, RedisLog, RoomLog


@dataclass
class Backends:
    url: str
    log: RoomLog
    bus: Bus
    redis: Any = None

    async def close(self) -> None:
        await self.bus.close()
        await self.log.close()
        if self.redis is not None:
            await self.redis.aclose()


def open_backends(url: str) -> Backends:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return Backends(url, MemoryLog(), MemoryBus())
    if scheme in ("redis", "rediss", "unix"):
        import redis.asyncio as aioredis  # imported lazily: memory:// needs no Redis client

        # A blocking pool: a burst of appends (a vote storm) waits for a free connection
        # instead of failing with "Too many connections" past redis-py's default of 100.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, decode_responses=False, health_check_interval=10, max_connections=128,
            timeout=10)
        client = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        return Backends(url, RedisLog(client), RedisBus(client), client)
    raise ValueError(f"unknown backend {url!r}: use memory:// or redis://host:port/db")
