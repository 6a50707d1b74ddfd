"""The room log: one ordered, durable list of entries per room.

Two backends behind :class:`RoomLog`: :class:`MemoryLog` (one process, nothing to install)
and :class:`RedisLog` (a Redis Stream per room, ``hc:{room}:log``; the room is the hash tag
so a room's keys live on one Redis Cluster shard). Entry ids are Redis stream ids
(``"<ms>-<seq>"``); the memory backend makes ids of the same shape so both order alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Unavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)


def id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of an entry id; raises ``ValueError`` on anything but ``<int>-<int>``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RoomLog(Protocol):
    async def append(self, room: str, entry: bytes) -> str:
        """Append durably and return the entry's id; raise ``Unavailable`` if it was not."""
        ...

    def tail(self, room: str, after: str | None) -> AsyncIterator[tuple[str, bytes]]:
        """Every entry after ``after`` (``None``: from the start), in order, forever."""
        ...

    async def save_snapshot(self, room: str, last_id: str, data: bytes) -> None: ...

    async def load_snapshot(self, room: str) -> tuple[str, bytes] | None: ...

    async def close(self) -> None: ...


class MemoryLog:
    """In-process log; several hubs in one process may share one (tests do)."""

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[str, bytes]]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._snapshots: dict[str, tuple[str, bytes]] = {}

    async def append(self, room: str, entry: bytes) -> str:
        entries = self._entries.setdefault(room, [])
        entry_id = f"{len(entries) + 1}-0"
        entries.append((entry_id, entry))
        changed = self._changed.pop(room, None)
        if changed is not None:
            changed.set()
        return entry_id

    async def tail(self, room: str, after: str | None) -> AsyncIterator[tuple[str, bytes]]:
        # Memory ids are "<position>-0", so the position after ``after`` is its number.
        position = id_key(after)[0] if after else 0
        while True:
            entries = self._entries.get(room, [])
            while position < len(entries):
                yield entries[position]
                position += 1
            changed = self._changed.setdefault(room, asyncio.Event())
            await changed.wait()

    async def save_snapshot(self, room: str, last_id: str, data: bytes) -> None:
        self._snapshots[room] = (last_id, data)

    async def load_snapshot(self, room: str) -> tuple[str, bytes] | None:
        return self._snapshots.get(room)

    async def close(self) -> None:
        pass


def log_key(room: str) -> str:
    return f"hc:{{{room}}}:log"


def snapshot_key(room: str) -> str:
    return f"hc:{{{room}}}:snap"


class RedisLog:
    """A Redis Stream per room. ``append`` returns only after Redis answered the XADD, so
    with the shipped config (AOF, ``appendfsync always``) an acknowledged entry is on disk.
    """

    BLOCK_MS = 5_000
    BATCH = 500

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def append(self, room: str, entry: bytes) -> str:
        import redis.exceptions

        try:
            entry_id = await self._redis.xadd(log_key(room), {"e": entry})
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise Unavailable(f"the room log is unreachable: {exc}") from None
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def tail(self, room: str, after: str | None) -> AsyncIterator[tuple[str, bytes]]:
        import redis.exceptions

        key = log_key(room)
        last = after or "0-0"
        backoff = 0.05
        while True:
            try:
                reply: Any = await self._redis.xread(
                    {key: last}, count=self.BATCH, block=self.BLOCK_MS
                )
            except redis.exceptions.TimeoutError:
                continue  # an idle blocking read timed out on the client side: read again
            except (redis.exceptions.ConnectionError, OSError) as exc:
                # Redis restarting or the network blinking: keep our place and try again.
                log.warning("room log %s unreachable (%s); retrying in %.2fs", room, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            for _key, items in reply or []:
                for raw_id, fields in items:
                    last = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    yield last, bytes(fields[b"e"])

    async def save_snapshot(self, room: str, last_id: str, data: bytes) -> None:
        from ..protocol import pack

        await self._redis.set(snapshot_key(room), pack([last_id, data]))

    async def load_snapshot(self, room: str) -> tuple[str, bytes] | None:
        from ..protocol import unpack

        raw: Any = await self._redis.get(snapshot_key(room))
        if raw is None:
            return None
        last_id, data = unpack(bytes(raw))
        return str(last_id), bytes(data)

    async def close(self) -> None:
        pass
