"""Live media of one room on one node, and the audio feature that holds one per room.

A :class:`MediaRoom` composes three owners, one job each, for one track :class:`Kind`
(:data:`~server.media.kind.AUDIO` today):

- :class:`~server.media.signalling.Signalling`: ``rtc.*`` frames and the peer connections
  of the room's local connections (publishers in, listeners' outlets out);
- :class:`~server.media.buslink.BusLink`: frames to and from the other nodes, with
  per-publisher sequence accounting;
- the levels task (:mod:`server.media.levels`) for the VU meters.

The room itself routes, deciding nothing the fold has not decided (:func:`audio.routes`,
re-read after every fold)::

    microphone ─RTP─► Publisher (passthrough.tap_receiver) ─► MediaRoom.ingest
        │ drop: codec, size, flood (Kind limits); not allowed now (Routes.feeds)
        ├──► local Source(floor | lang) ─► Outlet per listening track ─► DirectSender ─► RTP
        │                              └─► taps (a recording)
        └──► BusLink ─► bus hc:{room}:audio:<source>  [seq, ts, payload, pub, pid, level]
                         └──► other nodes' BusLink ─► MediaRoom.deliver ─► their Sources

A channel switch, a handover, a cough or a mute changes which packets an Outlet gets at
once, and the Outlet keeps its RTP clock continuous across sources, so nothing is
renegotiated. The floor forwards up to three microphones at once, each on its own lane
(relay.FloorLanes), and the listener's browser mixes them: the server never decodes to
mix. A room holds a bus subscription exactly for the sources that its outlets
and taps use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiortc.rtp import RtpPacket

from .. import audio
from ..audio import FLOOR
from ..errors import Refused
from ..node.feature import FrameHandler
from .buslink import BusLink
from .kind import AUDIO, Kind
from .levels import publish_levels
from .perroom import PerRoom
from .reach import publish_reach
from .relay import Frame, Outlet, Source
from .setup import MediaConfig
from .signalling import FRAMES, Peer, Peers, Publisher, Signalling
from .workers import WorkerPool

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub

log = logging.getLogger(__name__)

Tap = Callable[[Frame, float], None]
"""``tap(frame, now)``: called with each frame a source forwards (a recording's track)."""


class MediaRoom:
    """Media of one room on this node. ``async with`` it for as long as the hub lives."""

    def __init__(
        self,
        hub: RoomHub,
        config: MediaConfig,
        kind: Kind = AUDIO,
        workers: WorkerPool | None = None,
    ) -> None:
        self.hub = hub
        self.workers = workers
        self.room = hub.room
        self.kind = kind
        self.metrics = hub.metrics
        self.routes = audio.routes(hub.state)
        self.sources: dict[str, Source] = {}
        self.signalling = Signalling(self.room, kind, config, self.metrics, self, workers)
        self.bus = BusLink(
            hub.backends.bus,
            self.room,
            kind,
            self.metrics,
            self.deliver,
            lambda pub: pub in self.signalling.publishers,
        )
        self._stack = contextlib.AsyncExitStack()

    @property
    def peers(self) -> Mapping[str, Peers]:
        return self.signalling.peers

    @property
    def publishers(self) -> Mapping[str, Publisher]:
        return self.signalling.publishers

    async def __aenter__(self) -> MediaRoom:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.bus)
            await stack.enter_async_context(self.signalling)  # closed first: peers, then bus
            if self.kind.levels:
                levels = asyncio.get_running_loop().create_task(
                    publish_levels(self.publishers, self._on_air, self.hub.publish),
                    name=f"{self.kind.name}-levels-{self.room}",
                )
                stack.push_async_callback(_cancel, levels)
            reach = asyncio.get_running_loop().create_task(
                publish_reach(self.hub.node, self.signalling.reach, self.hub.publish),
                name=f"{self.kind.name}-reach-{self.room}",
            )
            stack.push_async_callback(_cancel, reach)
            self._stack = stack.pop_all()
        self.folded()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def handle(self, peer: Peer, data: dict[str, Any]) -> None:
        await self.signalling.handle(peer, data)

    async def leave(self, conn: str) -> None:
        """Connection ``conn`` closed: close its peer connections and free their ports."""
        await self.signalling.leave(conn)

    # -- packets ---------------------------------------------------------------------------

    def ingest(self, pub: Publisher, packet: RtpPacket) -> None:
        """One packet of a local publisher: check it against the kind, route it, send it on."""
        metrics = self.metrics.audio_in
        if packet.payload_type != pub.payload_type:
            metrics.labels("codec").inc()
            return
        payload = packet.payload
        if not payload or len(payload) > self.kind.max_payload:
            metrics.labels("size").inc()
            return
        if not pub.bucket.take():
            metrics.labels("flood").inc()
            return
        level = pub.meter.measure(packet) if pub.meter is not None else None
        if not self.routes.feeds(pub.pid, pub.target):
            metrics.labels("off_air").inc()
            return
        pub.seq += 1
        frame = Frame(pub.pub, pub.pid, pub.seq, packet.timestamp, payload, level)
        metrics.labels("forwarded").inc()
        self._push(pub.target, frame, time.monotonic())
        self.bus.send(pub.target, frame)

    def deliver(self, source: str, frame: Frame, now: float) -> None:
        """A frame of another node's publisher: routed by this node's own replica."""
        if self.routes.feeds(frame.pid, source):
            self._push(source, frame, now)

    def _push(self, name: str, frame: Frame, now: float) -> None:
        source = self.sources.get(name)
        if source is not None:
            self.metrics.audio_out.inc(source.push(frame, now))
        if self.workers is not None:
            self.workers.push(self.room, name, frame, now)

    def _on_air(self, pub: Publisher) -> bool:
        return self.routes.feeds(pub.pid, pub.target)

    # -- routing ---------------------------------------------------------------------------

    def folded(self) -> None:
        """Re-read the routing from the room state (after each fold)."""
        self.routes = audio.routes(self.hub.state)
        self.reroute()
        self._check_publishers()

    def may_publish(self, person: dict[str, Any], target: str) -> bool:
        return audio.may_publish(self.hub.state, person, target)

    def reroute(self) -> None:
        for listener in self.signalling.listeners():
            person = listener.peer.person
            main, under = self.routes.hearing(person["pid"], person["role"])
            if listener.on_hold:  # connected ahead of the click: carries nothing yet
                main = under = None
            if listener.remote is not None:
                listener.remote.route(main, under if listener.under_on else None)
                continue
            for outlet in listener.main:
                self._attach(outlet, main)
            for outlet in listener.under:
                self._attach(outlet, under if listener.under_on else None)
        self._subscriptions()

    def detach(self, outlets: list[Outlet]) -> None:
        for outlet in outlets:
            self._attach(outlet, None)
        self._subscriptions()

    def _attach(self, outlet: Outlet, name: str | None) -> None:
        old = outlet.source
        if old is not None and old.name == name:
            return
        if old is not None:
            old.discard(outlet)
        outlet.source = None
        if name is not None:
            source = self._source(name)
            source.add(outlet)
            outlet.source = source

    def _source(self, name: str) -> Source:
        source = self.sources.get(name)
        if source is None:
            source = self.sources[name] = Source(name)
        return source

    def _subscriptions(self) -> None:
        """Keep the sources that outlets or taps use, and a bus subscription for each."""
        for name, source in list(self.sources.items()):
            if source.idle:
                del self.sources[name]
        if self.workers is None:
            self.bus.subscribe_exactly(self.sources)
        else:
            self.bus.subscribe_exactly(set(self.sources) | self.workers.sources(self.room))

    def _check_publishers(self) -> None:
        """A speaker whose floor was taken back loses the microphone connection."""
        for peers in self.signalling.peers.values():
            pub = peers.publisher
            if pub is None or pub.target != FLOOR:
                continue
            try:
                self.may_publish(pub.peer.person, FLOOR)
            except Refused as exc:
                self.signalling.close_soon(peers, "publish", exc.to_wire())

    # -- taps ------------------------------------------------------------------------------

    def tap(self, name: str, tap: Tap, lane: int | None = None) -> None:
        """Give ``tap`` every frame source ``name`` forwards, until :meth:`untap`.

        On the floor: the one voice at a time a one-track listener hears, or with ``lane``
        the frames of that lane of the full floor (``audio.FLOOR_MICS`` lanes).
        """
        source = self._source(name)
        if lane is None:
            source.taps.append(tap)
        else:
            source.lane_taps.append((lane, tap))
        self._subscriptions()

    def untap(self, name: str, tap: Tap, lane: int | None = None) -> None:
        source = self.sources.get(name)
        if source is None:
            return
        if lane is None and tap in source.taps:
            source.taps.remove(tap)
        elif (lane, tap) in source.lane_taps:
            source.lane_taps.remove((lane, tap))  # type: ignore[arg-type]
        self._subscriptions()


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class MediaNode(PerRoom[MediaRoom]):
    """The audio feature: one :class:`MediaRoom` per room, the ``rtc.*`` frames."""

    name = "audio"
    slice = audio.SLICE
    missing = "this node has no audio for this room"

    def __init__(self, config: MediaConfig, kind: Kind = AUDIO) -> None:
        super().__init__()
        self.config = config
        self.kind = kind
        self.workers: WorkerPool | None = None
        """The media worker processes (``[media] workers``), while running."""

    def frames(self) -> Mapping[str, FrameHandler]:
        return dict.fromkeys(FRAMES, self.handle)

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        # Credentials are per person: pages ask ``rtc.ice`` before each peer connection.
        return {
            "media": {
                "ice_servers": [dict(s) for s in self.config.ice_servers],
                "turn": self.config.turn is not None,
            }
        }

    async def enter(self, stack: contextlib.AsyncExitStack, node: Host) -> None:
        if self.config.workers and self.kind is AUDIO:
            self.workers = await stack.enter_async_context(
                WorkerPool(
                    self.config.workers,
                    node.metrics,
                    list(self.config.server_ice_servers),
                    pin=self.config.pin_workers,
                )
            )

    def leave_all(self) -> None:
        self.workers = None

    def make_room(self, hub: RoomHub) -> MediaRoom:
        return MediaRoom(hub, self.config, self.kind, self.workers)
