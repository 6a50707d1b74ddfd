"""The bus: high-rate, ephemeral messages (audio frames, levels, live captions) to every node.

Nothing on the bus is stored: a node that is not subscribed when a message goes by never
sees it. Subscriptions are context managers (``async with bus.subscribe(ch) as messages``)
and a node holds a Redis subscription only while one of its own listeners needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

QUEUE = 1024
"""Messages a subscriber may fall behind by; past that the oldest are dropped and counted."""


class Subscription:
    """One local subscriber's queue. Iterate it; it never blocks the publisher."""

    def __init__(self, channel: str, size: int = QUEUE) -> None:
        self.channel = channel
        self.dropped = 0
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(size)

    def put(self, data: bytes) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(data)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> bytes:
        return await self._queue.get()

    def get_nowait(self) -> bytes | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None


class Bus(Protocol):
    async def publish(self, channel: str, data: bytes) -> None: ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


class MemoryBus:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        for sub in self._subs.get(channel, ()):
            sub.put(data)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel)
        self._subs.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs[channel]
            subs.discard(sub)
            if not subs:
                del self._subs[channel]

    async def close(self) -> None:
        self._subs.clear()


class RedisBus:
    """Redis pub/sub: one connection per node, local fan-out to its subscribers."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._subs: dict[str, set[Subscription]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, data: bytes) -> None:
        await self._redis.publish(channel, data)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel)
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            first = channel not in self._subs
            self._subs.setdefault(channel, set()).add(sub)
            if first:
                await self._pubsub.subscribe(channel)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")
        try:
            yield sub
        finally:
            async with self._lock:
                subs = self._subs.get(channel, set())
                subs.discard(sub)
                if not subs:
                    self._subs.pop(channel, None)
                    if self._pubsub is not None:
                        with contextlib.suppress(Exception):
                            await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: redis-py resubscribes on reconnect
                log.warning("bus connection lost (%s); reconnecting", exc)
                await asyncio.sleep(0.2)
                continue
            if message is None:
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else channel
            for sub in tuple(self._subs.get(name, ())):
                sub.put(message["data"])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
