"""The bus: high-rate, ephemeral messages (audio frames, levels, live captions) to every node.

Nothing on the bus is stored: a node that is not subscribed when a message goes by never
sees it. Subscriptions are context managers (``async with bus.subscribe(ch) as messages``)
that enter once the subscription is active, so a message published after that reaches it;
a node holds a Redis subscription only while one of its own listeners needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import Connection

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

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish each ``(channel, data)`` in order, in as few round trips as the bus can
        (a media link's queued frames: one round trip each would cap it at 1/RTT)."""
        ...

    def subscribe(self, channel: str) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Enter once the subscription is active: later messages on ``channel`` reach it."""
        ...

    async def close(self) -> None: ...


class MemoryBus:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        for sub in self._subs.get(channel, ()):
            sub.put(data)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for channel, data in messages:
            await self.publish(channel, data)

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


def _retrieved(sent: asyncio.Future[object]) -> None:
    """Mark a shielded command's outcome as seen: its caller may have been cancelled."""
    if not sent.cancelled():
        sent.exception()


class RedisBus:
    """Redis pub/sub: one connection per node, local fan-out to its subscribers.

    ``subscribe`` yields only once Redis has confirmed the SUBSCRIBE (redis-py's
    ``PubSub.subscribe`` only sends it), so a message published after it returns is received.
    The reader task reads the confirmations. Redis answers a connection's commands in order,
    so a ``subscribe`` reply is the answer to our latest SUBSCRIBE of that channel unless an
    UNSUBSCRIBE of it was sent later and is still unanswered (a subscriber that left, or was
    cancelled, before its confirmation came).

    ``sharded``: SSUBSCRIBE/SPUBLISH (Redis 7's sharded pub/sub) instead, to the one Redis
    Cluster node that serves the channels' slot (server/node/cluster.py makes one such bus
    per slot in use); ``relocate`` is asked, when the connection is lost, where that slot is
    served now (a failover moves it to the replica), and the bus reconnects there.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        sharded: bool = False,
        relocate: Callable[[], Awaitable[tuple[str, int] | None]] | None = None,
    ) -> None:
        self._redis = client
        self._sharded = sharded
        self._relocate = relocate
        prefix = "s" if sharded else ""
        self._kinds = (f"{prefix}message", f"{prefix}subscribe", f"{prefix}unsubscribe")
        self._subs: dict[str, set[Subscription]] = {}
        self._active: dict[str, asyncio.Event] = {}
        """Per channel with local subscribers: set once Redis has confirmed the subscription."""
        self._leaving: dict[str, int] = {}
        """Per channel: UNSUBSCRIBEs sent whose reply has not been read yet."""
        self._pubsub: aioredis.client.PubSub | None = None
        self._watched: Connection | None = None
        self._sending: asyncio.Future[object] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, channel: str, data: bytes) -> None:
        if self._sharded:
            await self._redis.spublish(channel, data)
        else:
            await self._redis.publish(channel, data)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """One pipeline (no transaction): one round trip, on one connection, so in order."""
        pipe = self._redis.pipeline(transaction=False)
        for channel, data in messages:
            if self._sharded:
                pipe.spublish(channel, data)
            else:
                pipe.publish(channel, data)
        await pipe.execute()

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Yield once Redis has confirmed the subscription (after a reconnect if one intervenes)."""
        sub = Subscription(channel)
        try:
            active = await self._join(channel, sub)
            await active.wait()
            yield sub
        finally:
            await self._leave(channel, sub)

    async def _join(self, channel: str, sub: Subscription) -> asyncio.Event:
        async with self._lock:
            self._subs.setdefault(channel, set()).add(sub)
            active = self._active.get(channel)
            if active is None:
                active = self._active[channel] = asyncio.Event()
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                ps = self._pubsub
                await self._send(ps.ssubscribe(channel) if self._sharded else ps.subscribe(channel))
                self._watch(self._pubsub.connection)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")
            return active

    async def _leave(self, channel: str, sub: Subscription) -> None:
        async with self._lock:
            subs = self._subs.get(channel)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            if subs:
                return
            del self._subs[channel]
            del self._active[channel]
            if self._pubsub is None:
                return
            if self._sending is not None:  # a cancelled subscriber's SUBSCRIBE goes out first
                await asyncio.wait({self._sending})
            self._leaving[channel] = self._leaving.get(channel, 0) + 1
            try:
                ps = self._pubsub
                await self._send(
                    ps.sunsubscribe(channel) if self._sharded else ps.unsubscribe(channel)
                )
            except Exception:  # not sent (connection lost): no reply will come
                self._answered(channel)

    async def _send(self, command: Awaitable[object]) -> None:
        """Write one (UN)SUBSCRIBE whole, even if the caller is cancelled meanwhile.

        redis-py drops the connection when a write is cancelled half-way, and the
        ``asyncio.wait_for`` it writes through can swallow the cancellation on Python 3.11;
        shielded, the caller sees its cancellation and the command still goes out whole.
        """
        sending = self._sending = asyncio.ensure_future(command)
        sending.add_done_callback(_retrieved)
        await asyncio.shield(sending)

    def _answered(self, channel: str) -> None:
        left = self._leaving.pop(channel, 0) - 1
        if left > 0:
            self._leaving[channel] = left

    def _watch(self, connection: Connection | None) -> None:
        if connection is not None and connection is not self._watched:
            connection.register_connect_callback(self._reconnected)  # type: ignore[no-untyped-call]
            self._watched = connection

    def _reconnected(self, connection: Connection) -> None:
        """A new connection: the old one's replies are lost, and redis-py resubscribes."""
        self._leaving.clear()

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
                await self._follow()
                continue
            if message is None:
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else channel
            kind = message["type"]
            kind = kind.decode() if isinstance(kind, bytes) else kind
            data, subscribed, unsubscribed = self._kinds
            if kind == data:
                for sub in tuple(self._subs.get(name, ())):
                    sub.put(message["data"])
            elif kind == subscribed and not self._leaving.get(name):
                active = self._active.get(name)
                if active is not None:
                    active.set()
            elif kind == unsubscribed:
                self._answered(name)

    async def _follow(self) -> None:
        """After a lost connection: reconnect where ``relocate`` says the slot is now."""
        if self._relocate is None or self._pubsub is None or self._pubsub.connection is None:
            return
        try:
            address = await self._relocate()
        except Exception as exc:  # the cluster itself unreachable: ask again next time
            log.warning("could not locate the bus's shard (%s)", exc)
            return
        connection: Any = self._pubsub.connection
        if address is None or (connection.host, connection.port) == address:
            return
        log.warning("bus shard moved to %s:%d; resubscribing there", *address)
        await connection.disconnect()
        connection.host, connection.port = address
        self._redis.connection_pool.connection_kwargs.update(host=address[0], port=address[1])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._watched is not None:
            self._watched.deregister_connect_callback(self._reconnected)  # type: ignore[no-untyped-call]
            self._watched = None
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
