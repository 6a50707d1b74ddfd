"""Frames of one room and one kind to and from the bus, with per-publisher accounting.

Out: :meth:`BusLink.send` queues a local publisher's frame in a bounded outbox that one task
publishes on ``kind.bus_channel(room, source)``, whatever is queued in one round trip; when
the bus falls behind, the oldest frames are dropped (and counted), never the microphone's
newest.

In: :meth:`BusLink.subscribe_exactly` holds one subscription for each source the room
uses, no more. Each frame is checked against its publisher's sequence (``seq`` counts per
publisher): a gap counts as lost, an older one as reordered (and dropped). A publisher not
heard from for :data:`FORGET_AFTER` seconds is forgotten by the link's own timer. The link
decides nothing about routing: a frame that passes the accounting goes to ``deliver``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .kind import Kind
from .relay import Frame

if TYPE_CHECKING:
    from ..node.bus import Bus
    from ..node.metrics import Metrics

log = logging.getLogger(__name__)

OUTBOX = 500
"""Frames waiting for the bus (10 s of one microphone) before the oldest are dropped."""
FORGET_AFTER = 60.0
"""Seconds after which a silent remote publisher's sequence is forgotten."""
FORGET_EVERY = 10.0

Deliver = Callable[[str, Any, float], None]
"""``deliver(source, frame, now)``: a frame from another node passed the accounting."""


class BusLink:
    """The bus traffic of one room and kind. ``async with`` it; then ``send``, ``subscribe_*``."""

    def __init__(
        self,
        bus: Bus,
        room: str,
        kind: Kind,
        metrics: Metrics,
        deliver: Deliver,
        ours: Callable[[str], bool],
        decode: Callable[[bytes], Any] = Frame.from_bus,
    ) -> None:
        self.bus = bus
        self.room = room
        self.kind = kind
        self.metrics = metrics
        self.deliver = deliver
        self.ours = ours
        """Whether a publisher id is local (its frames were delivered before publishing)."""
        self.decode = decode
        """bytes → a frame with ``pub`` and ``seq`` (the kind's: relay.Frame, VideoPacket)."""
        # The kind's counters: ``audio_bus``, ``video_bus``, … (server/node/metrics.py).
        self.counted = getattr(metrics, f"{kind.name}_bus")
        self.lost = getattr(metrics, f"{kind.name}_bus_lost")
        self.reordered = getattr(metrics, f"{kind.name}_bus_reordered")
        self.subscribed: dict[str, asyncio.Task[None]] = {}
        self.expected: dict[str, tuple[int, float]] = {}
        """publisher → (next sequence number, when last heard)."""
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> BusLink:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish(), name=f"{self.kind.name}-bus-out-{self.room}"),
            loop.create_task(self._forget(), name=f"{self.kind.name}-bus-forget-{self.room}"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [*self._tasks, *self.subscribed.values()]
        self.subscribed.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- out -----------------------------------------------------------------------------

    def send(self, source: str, frame: Any) -> None:
        """Queue a local publisher's frame for the other nodes."""
        if len(self._outbox) >= OUTBOX:
            self._outbox.popleft()  # the bus is not keeping up: other nodes lose the oldest
            self.counted.labels("dropped").inc()
        self._outbox.append((source, frame.to_bus()))
        self._ready.set()

    async def _publish(self) -> None:
        """Publish what the outbox holds, all of it in one round trip (``publish_many``):
        frames queued while a round trip is out go together in the next, so the link keeps
        up at any RTT (one round trip per frame capped it at 1/RTT frames a second; with a
        loaded Redis or node, video's few hundred packets a second backed up,
        bench/panel.py)."""
        counter = self.counted.labels("out")
        warned = 0.0
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox:
                batch = [(self.kind.bus_channel(self.room, s), d) for s, d in self._outbox]
                self._outbox.clear()
                try:
                    await self.bus.publish_many(batch)
                    counter.inc(len(batch))
                except Exception as exc:  # the bus is down: listeners elsewhere miss frames
                    self.counted.labels("failed").inc(len(batch))
                    now = time.monotonic()
                    if now - warned > 10:
                        warned = now
                        log.warning(
                            "room %s: %s frames not published: %s", self.room, self.kind.name, exc
                        )

    # -- in ------------------------------------------------------------------------------

    def subscribe_exactly(self, sources: Iterable[str]) -> None:
        """Hold a subscription for each of ``sources`` and for nothing else."""
        wanted = set(sources)
        for name in set(self.subscribed) - wanted:
            self.subscribed.pop(name).cancel()
        for name in wanted - set(self.subscribed):
            self.subscribed[name] = asyncio.get_running_loop().create_task(
                self._subscribe(name), name=f"{self.kind.name}-sub-{self.room}-{name}"
            )

    async def _subscribe(self, source: str) -> None:
        async with self.bus.subscribe(self.kind.bus_channel(self.room, source)) as frames:
            async for data in frames:
                self.received(source, data)

    def received(self, source: str, data: bytes) -> None:
        """One frame from the bus: decode, account for its sequence, deliver."""
        try:
            frame = self.decode(data)
        except Exception:
            self.counted.labels("bad").inc()
            return
        if self.ours(frame.pub):
            return  # ours: already delivered locally
        self.counted.labels("in").inc()
        now = time.monotonic()
        expected = self.expected.get(frame.pub)
        if expected is not None:
            if frame.seq < expected[0]:
                self.reordered.inc()
                return
            if frame.seq > expected[0]:
                self.lost.inc(frame.seq - expected[0])
        self.expected[frame.pub] = (frame.seq + 1, now)
        self.deliver(source, frame, now)

    async def _forget(self) -> None:
        while True:
            await asyncio.sleep(FORGET_EVERY)
            self.forget_idle(time.monotonic())

    def forget_idle(self, now: float) -> None:
        """Drop the sequence of publishers not heard from for :data:`FORGET_AFTER` s."""
        for pub, (_, seen) in list(self.expected.items()):
            if now - seen > FORGET_AFTER:
                del self.expected[pub]
