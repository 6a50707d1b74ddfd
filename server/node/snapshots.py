"""A room's snapshots, made and saved without stopping the event loop.

A snapshot is the room state packed with msgpack at one log entry, so that a new node (or a
restarted one) folds only the log's tail. Packing the live replica would block the loop for
the whole encode (tens of ms for a large room), and packing it on another thread would read
a state the loop keeps changing. So :class:`Snapshots` keeps a *second replica* that only a
worker thread touches: the hub hands it each raw entry as it folds it (an append to a list),
and every ``every`` entries a thread folds the new entries into that replica — the same pure
fold, so the same state — and packs it. One save at a time; a failed save is logged and
retried with backoff until it succeeds; a snapshot that fell due meanwhile comes next.

Each save also keeps the log short: the worker thread, while it folds, picks what must
outlive the log (:func:`archived`: ``ballot.*``/``poll.*`` entries, accepted caption
lines); the save archives them *first*, then saves the snapshot, then trims the log
(``XTRIM MINID``) to the snapshot saved :data:`KEEP` saves ago — at least ``KEEP × every``
entries stay behind the latest snapshot (a resume window as long as a hub keeps,
``hub.RECENT``). So any saved snapshot has the archive complete up to its entry, and a
node starting from it finds every entry after it in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from .. import fold
from ..protocol import pack, unpack
from ..types import State
from .log import RoomLog

log = logging.getLogger(__name__)

EVERY = 500
KEEP = 10
"""Saves behind the latest that the log keeps (``KEEP × EVERY`` ≥ ``hub.RECENT``)."""
ARCHIVED = ("ballot.", "poll.")
"""Commands whose entries are archived whole for audit before the log is trimmed."""
RETRY = (0.5, 10.0)
"""First and longest wait between attempts to save a snapshot while the backend is away."""


class Snapshots:
    """Call :meth:`add` for each folded entry, in log order; :meth:`close` at the end."""

    def __init__(
        self, room: str, store: RoomLog, rules: fold.Rules, base: State, every: int | None = None
    ) -> None:
        self.room = room
        self.rules = rules
        self.store = store
        self.every = every or EVERY
        self._replica = base
        """Owned by the worker thread while a save runs, by nobody else ever."""
        self._entries: list[tuple[str, bytes]] = []
        self._count = 0
        self._due = False
        self._task: asyncio.Task[None] | None = None
        self.saved: str | None = None
        """The entry id of the last snapshot saved."""
        self._archive: list[tuple[str, bytes]] = []
        """Picked by the worker, not yet archived (kept across failed attempts)."""
        self._points: deque[str] = deque()
        """Ids of the last saves: the log is trimmed to the oldest past ``KEEP``."""
        self.trimmed: str | None = None
        """The id the log was last trimmed to (entries before it are gone)."""

    def add(self, entry_id: str, raw: bytes) -> None:
        self._entries.append((entry_id, raw))
        self._count += 1
        if self._count % self.every == 0:
            self._due = True
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(
                    self._run(), name=f"snapshot-{self.room}"
                )

    async def _run(self) -> None:
        """Save snapshots while one is due: one that fell due during a save comes next."""
        while self._due:
            self._due = False
            entries, self._entries = self._entries, []
            data, records = await asyncio.to_thread(self._advance, entries)
            self._archive.extend(records)
            await self._save(entries[-1][0], data)

    async def _save(self, at: str, data: bytes) -> None:
        delay = RETRY[0]
        while True:
            try:
                if self._archive:
                    await self.store.archive(self.room, self._archive)
                    self._archive = []
                await self.store.save_snapshot(self.room, at, data)
                self.saved = at
                self._points.append(at)
                if len(self._points) > KEEP:
                    point = self._points.popleft()
                    await self.store.trim(self.room, point)
                    self.trimmed = point
                return
            except Exception as exc:  # the backend is away: keep the snapshot, try again
                log.warning(
                    "room %s: snapshot at %s not saved (%s); retrying in %.1f s",
                    self.room,
                    at,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY[1])

    def _advance(self, entries: list[tuple[str, bytes]]) -> tuple[bytes, list[tuple[str, bytes]]]:
        """On the worker thread: fold ``entries`` into the private replica and pack it;
        pick what the archive keeps of them."""
        records: list[tuple[str, bytes]] = []
        for entry_id, raw in entries:
            try:
                entry = unpack(raw)
                outcome = self.rules.fold(self._replica, entry_id, entry)
            except Exception:  # as in the hub: a bug in a reducer must not stop the room
                log.exception("room %s: snapshot replica cannot fold %s", self.room, entry_id)
                continue
            record = archived(entry, raw, outcome.events)
            if record is not None:
                records.append((entry_id, record))
        return pack(self._replica), records

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def archived(entry: Any, raw: bytes, events: list[Any]) -> bytes | None:
    """What the archive keeps of one folded entry: ``{entry}`` for a vote's command (the
    raw entry, for audit), ``{captions}`` for the caption lines it added, else nothing."""
    record: dict[str, Any] = {}
    cmd = entry.get("cmd") if isinstance(entry, dict) else None
    if isinstance(cmd, str) and cmd.startswith(ARCHIVED):
        record["entry"] = raw
    captions = [e for e in events if e.get("type") == "caption"]
    if captions:
        record["captions"] = captions
    return pack(record) if record else None
