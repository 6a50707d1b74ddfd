"""The node's heartbeat, beaten from a thread of its own.

Other nodes take a node whose heartbeat (``hc:node:<name>``) expired for dead and retire
its connections (``Node.reap``): its people go offline, a live interpreter's grace starts,
their ballots are refused ``not_present``. Beaten from the event loop, the heartbeat waited
behind whatever held the loop — a join storm on a small machine, a long garbage collection,
a slow host — and a node that was only busy for longer than the TTL was declared dead while
every one of its connections was still open (docs/scaling.md, "What breaks first").

So the beat runs in a thread with its own blocking Redis connection (``Backends.beater``),
which a busy loop does not delay: a CPU-bound loop gives up the GIL every few milliseconds
and a loop blocked in a system call holds nothing. A node whose loop is *stuck* must still
be found dead, so the thread beats only while the loop has turned within ``stall_limit``
seconds (a small ``call_later`` chain stamps each turn): a loop wedged for good stops the
beat, and the others reap its people ``stall_limit + ttl`` seconds later. A node stopped
outright (SIGSTOP, a frozen VM) stops its thread too: that case is the hub's to mend when
it wakes (``RoomHub`` joins again the connections it still holds that others retired).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Beat = Callable[[str, float], None]
"""``beat(node, ttl)``: say ``node`` is alive for ``ttl`` seconds; blocking, thread-safe."""


class Heartbeat:
    """Beat ``beat(name, ttl)`` every ``every`` seconds from a daemon thread, while the event
    loop keeps turning. ``start()`` on the loop, ``stop()`` on the way out."""

    def __init__(self, name: str, beat: Beat, every: float, ttl: float, stall_limit: float) -> None:
        self.name = name
        self._beat = beat
        self.every = every
        self.ttl = ttl
        self.stall_limit = stall_limit
        self._turned = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamp: asyncio.TimerHandle | None = None
        self.beats = 0
        """Beats written so far (tests, metrics)."""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._turned = time.monotonic()
        self._stamp_turn(loop)
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.name}", daemon=True
        )
        self._thread.start()

    def _stamp_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._turned = time.monotonic()
        self._stamp = loop.call_later(min(1.0, self.every / 2), self._stamp_turn, loop)

    def _run(self) -> None:
        stalled = False
        while not self._stop.wait(self.every):
            quiet = time.monotonic() - self._turned
            if quiet > self.stall_limit:
                if not stalled:
                    log.error(
                        "node %s: event loop stuck for %.0f s; heartbeat stopped", self.name, quiet
                    )
                stalled = True
                continue
            stalled = False
            try:
                self._beat(self.name, self.ttl)
                self.beats += 1
            except Exception as exc:  # Redis away for a moment: try again next beat
                log.warning("node %s: heartbeat failed: %s", self.name, exc)

    async def stop(self) -> None:
        """Stop beating (the key then expires by itself); waits for the thread."""
        if self._stamp is not None:
            self._stamp.cancel()
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
