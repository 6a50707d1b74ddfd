"""The room log: one ordered, durable list of entries per room.

Two backends behind :class:`RoomLog`: :class:`MemoryLog` (one process, nothing to install)
and :class:`RedisLog` (a Redis Stream per room, ``hc:{room}:log``; the room is the hash tag
so a room's keys live on one Redis Cluster shard). Entry ids are Redis stream ids
(``"<ms>-<seq>"``); the memory backend makes ids of the same shape so both order alike.

The log is trimmed behind the snapshots (server/node/snapshots.py): before that, what must
outlive the log is copied to the room's *archive* (``hc:{room}:archive``, a stream with the
log's entry ids): every ``ballot.*``/``poll.*`` entry for audit, and the accepted caption
lines for transcripts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Unavailable
from .groupcommit import GroupCommit

if TYPE_CHECKING:
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Redis errors that pass: a restart, a blink of the network, a cluster failing over
    (its slot moved, its shard without a master for a moment). Anything else is a bug."""
    import redis.exceptions as e

    return (
        e.ConnectionError,
        e.TimeoutError,
        OSError,
        e.ClusterError,
        e.TryAgainError,
        e.AskError,
        e.RedisClusterException,
    )


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

    async def archive(self, room: str, records: list[tuple[str, bytes]]) -> None:
        """Add ``records`` (log entry id, data), in id order, skipping ids already there
        (every node archives what it folded: the first one's copy counts)."""
        ...

    async def read_archive(self, room: str) -> list[tuple[str, bytes]]: ...

    async def trim(self, room: str, min_id: str) -> None:
        """Drop the entries before ``min_id`` (Redis ``XTRIM MINID``)."""
        ...

    async def close(self) -> None: ...


class MemoryLog:
    """In-process log; several hubs in one process may share one (tests do)."""

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[str, bytes]]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._snapshots: dict[str, tuple[str, bytes]] = {}
        self._trimmed: dict[str, int] = {}
        """Entries dropped from the front of each room's list (``trim``)."""
        self._archive: dict[str, list[tuple[str, bytes]]] = {}

    async def append(self, room: str, entry: bytes) -> str:
        entries = self._entries.setdefault(room, [])
        entry_id = f"{len(entries) + self._trimmed.get(room, 0) + 1}-0"
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
            position = max(position, self._trimmed.get(room, 0))
            while position - self._trimmed.get(room, 0) < len(entries):
                yield entries[position - self._trimmed.get(room, 0)]
                position += 1
            changed = self._changed.setdefault(room, asyncio.Event())
            await changed.wait()

    async def save_snapshot(self, room: str, last_id: str, data: bytes) -> None:
        self._snapshots[room] = (last_id, data)

    async def load_snapshot(self, room: str) -> tuple[str, bytes] | None:
        return self._snapshots.get(room)

    async def archive(self, room: str, records: list[tuple[str, bytes]]) -> None:
        kept = self._archive.setdefault(room, [])
        for entry_id, data in records:
            if not kept or id_key(entry_id) > id_key(kept[-1][0]):
                kept.append((entry_id, data))

    async def read_archive(self, room: str) -> list[tuple[str, bytes]]:
        return list(self._archive.get(room, []))

    async def trim(self, room: str, min_id: str) -> None:
        entries = self._entries.get(room, [])
        drop = 0
        while drop < len(entries) and id_key(entries[drop][0]) < id_key(min_id):
            drop += 1
        if drop:
            del entries[:drop]
            self._trimmed[room] = self._trimmed.get(room, 0) + drop

    async def close(self) -> None:
        pass


def log_key(room: str) -> str:
    return f"hc:{{{room}}}:log"


def snapshot_key(room: str) -> str:
    return f"hc:{{{room}}}:snap"


def archive_key(room: str) -> str:
    return f"hc:{{{room}}}:archive"


class RedisLog:
    """A Redis Stream per room. ``append`` returns only after Redis answered the XADD, so
    with the shipped config (AOF, ``appendfsync always``) an acknowledged entry is on disk.

    Appends made together share one round trip (server/node/groupcommit.py): the node's
    appends of all its rooms go down one pipeline per batch (on a cluster, one per master:
    server/node/cluster.py).
    """

    BLOCK_MS = 5_000
    BATCH = 500

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self.group = GroupCommit(self._xadd_batch)

    async def append(self, room: str, entry: bytes) -> str:
        try:
            return await self.group.append(log_key(room), entry)
        except transient_errors() as exc:
            raise Unavailable(f"the room log is unreachable: {exc}") from None

    async def _xadd_batch(self, items: list[tuple[str, bytes]]) -> list[str | Exception]:
        """One pipeline (no transaction) of one XADD per item, on one connection."""
        pipe = self._redis.pipeline(transaction=False)
        for key, entry in items:
            pipe.xadd(key, {"e": entry})
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return [r if isinstance(r, Exception) else _decode(r) for r in replies]

    async def _xread(self, key: str, last: str) -> Any:
        """One blocking read of ``key``'s entries after ``last``."""
        return await self._redis.xread({key: last}, count=self.BATCH, block=self.BLOCK_MS)

    async def tail(self, room: str, after: str | None) -> AsyncIterator[tuple[str, bytes]]:
        import redis.exceptions

        key = log_key(room)
        last = after or "0-0"
        backoff = 0.05
        while True:
            try:
                reply: Any = await self._xread(key, last)
            except redis.exceptions.TimeoutError:
                continue  # an idle blocking read timed out on the client side: read again
            except Exception as exc:
                # Redis restarting, the network blinking, a cluster shard failing over
                # (redis-py's cluster client then closes connections under their users,
                # which can surface as errors of any type): keep our place and try again.
                # A tail that gave up would stop the room.
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

    async def archive(self, room: str, records: list[tuple[str, bytes]]) -> None:
        import redis.exceptions

        key = archive_key(room)
        newest: Any = await self._redis.xrevrange(key, count=1)
        last = _decode(newest[0][0]) if newest else None
        for entry_id, data in records:
            if last is not None and id_key(entry_id) <= id_key(last):
                continue
            try:
                await self._redis.xadd(key, {"e": data}, id=entry_id)
            except redis.exceptions.ResponseError:  # another node's copy came first
                continue
            last = entry_id

    async def read_archive(self, room: str) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        start = "-"
        while True:
            items: Any = await self._redis.xrange(archive_key(room), start, "+", count=1000)
            for raw_id, fields in items:
                out.append((_decode(raw_id), bytes(fields[b"e"])))
            if len(items) < 1000:
                return out
            start = "(" + out[-1][0]

    async def trim(self, room: str, min_id: str) -> None:
        await self._redis.xtrim(log_key(room), minid=min_id, approximate=False)

    async def close(self) -> None:
        await self.group.close()


def _decode(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
