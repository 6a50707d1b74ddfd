"""Group commit: the appends that arrive together go to the log in one round trip.

A vote or join storm brings hundreds of appends a second to a node. Sent one by one, each
takes a pooled Redis connection, a round trip and (with ``appendfsync always``) its share
of an fsync. :class:`GroupCommit` queues them instead: the appends made while a batch is on
its way are written together as the next batch (one pipeline of ``XADD`` on one connection:
one round trip, one fsync in Redis's event loop). Each append returns once Redis answered
its own ``XADD``, so an acknowledged command is as durable as before; the order of the
appends of one batch is the order they were made in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Write = Callable[[list[tuple[str, bytes]]], Awaitable[list[str | Exception]]]
"""``await write([(key, entry), …])``: each entry's id, or the error of that one entry;
raises when the whole batch failed (the connection was lost)."""

MAX_BATCH = 512
"""Entries per round trip at most: a larger queue goes in several batches, in order."""


class GroupCommit:
    """Queue appends; one task writes what is queued, batch after batch, one at a time."""

    def __init__(self, write: Write, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._max = max_batch
        self._queue: list[tuple[str, bytes, asyncio.Future[str]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        """Round trips made so far (with ``entries``: the mean batch size, for benchmarks)."""
        self.entries = 0

    async def append(self, key: str, entry: bytes) -> str:
        """Write ``entry`` to ``key`` with the next batch; its id once Redis answered.

        Raises what the write raised for this entry or for its whole batch.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        self._queue.append((key, entry, done))
        if self._task is None:
            # Started on the loop's next turn: every append made in this turn joins it.
            self._task = loop.create_task(self._run(), name="group-commit")
        return await done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                self.batches += 1
                self.entries += len(batch)
                try:
                    results = await self._write([(key, entry) for key, entry, _ in batch])
                except Exception as exc:
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the log closes): nobody is told "written"
                    for _, _, done in batch:
                        done.cancel()
                    raise
                for (_, _, done), result in zip(batch, results, strict=True):
                    if done.done():  # its caller gave up waiting; the entry is written
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._task = None

    async def close(self) -> None:
        """Stop writing: what is queued and not written is refused (cancelled)."""
        task, self._task = self._task, None
        for _, _, done in self._queue:
            done.cancel()
        self._queue.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
