"""Live audio on one node: microphones in, listener tracks out, frames over the bus.

Per room per node, a :class:`MediaRoom` holds the WebRTC peer connections of the room's
local connections (signalled over their WebSocket: ``rtc.*`` messages) and routes Opus
packets without decoding them for listeners:

    microphone ─RTP─► Publisher (passthrough.tap_receiver)
        │ drop: codec, size, flood, not allowed now (audio.Routes.feeds)
        ├──► local Source(floor | lang) ─► Outlet per listening track ─► EncodedTrack ─► RTP
        └──► bus  hc:{room}:audio:<source>  msgpack [seq, ts, payload, pub, pid, level]
                   └──► other nodes' Sources (only nodes whose listeners need that source)

Routing is re-read from the room state after every fold (:func:`audio.routes`): a channel
switch, a handover, a cough or a mute changes which packets an :class:`Outlet` gets at
once, and the Outlet keeps its RTP clock continuous across sources, so nothing is
renegotiated. The floor may have several open microphones (chair and speaker); its Source
forwards one at a time — the one speaking, by the RFC 6464 level each packet carries
(measured once per publisher when the browser sends no level) — because mixing would need
decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from .. import audio
from ..audio import FLOOR
from ..errors import BadArgs, HemicycleError, RateLimited, Refused, Unavailable, UnknownType
from ..node.feature import Feature, FrameHandler
from ..node.sessions import TokenBucket
from ..state import Recording
from ..types import MODERATOR, SYSTEM, Actor, Event, arg_str
from . import passthrough
from .relay import Frame, LevelMeter, Outlet, Source
from .setup import MediaConfig, answer_payload_type, check_offer

if TYPE_CHECKING:
    from ..node.feature import Host
    from ..node.hub import RoomHub, Sink
    from ..node.metrics import Metrics
    from ..node.sessions import Session
    from .recording import Recorder

log = logging.getLogger(__name__)

MAX_PAYLOAD = 1400
MAX_SDP = 20_000
PUB_RATE, PUB_BURST = 120.0, 60.0
"""Packets per second a microphone may send (Opus at 10 ms is 100/s); past it: dropped."""
LEVELS_EVERY = 0.2
LEVELS_TO = ["role:moderator", "role:interpreter"]
ORPHAN_CHECK_TICKS = 15
"""Every 3 s (15 level ticks), check that the recording's node is still alive."""
OFFER_RATE, OFFER_BURST = 1.0, 5.0
OUTBOX = 500
"""Frames waiting for the bus (10 s of one microphone) before the oldest are dropped."""


class Peer(Protocol):
    """What the media layer needs of a connection (sessions.Session is one)."""

    person: dict[str, Any]
    actor: Actor

    def send(self, message: dict[str, Any]) -> None: ...


def bus_channel(room: str, source: str) -> str:
    return f"hc:{{{room}}}:audio:{source}"


# --- peer connections --------------------------------------------------------------------------


class Publisher:
    """One microphone: a receive-only peer connection whose packets feed one source."""

    def __init__(
        self, pub: str, peer: Peer, target: str, pc: RTCPeerConnection, payload_type: int
    ) -> None:
        self.pub = pub
        self.peer = peer
        self.pid: str = peer.person["pid"]
        self.target = target
        self.pc = pc
        self.payload_type = payload_type
        self.seq = 0
        self.bucket = TokenBucket(PUB_RATE, PUB_BURST)
        self.meter = LevelMeter()
        self.received = 0


class Listener:
    """One person's listening peer connection: a main track and the floor underneath."""

    def __init__(
        self, peer: Peer, pc: RTCPeerConnection, main: Outlet, under: Outlet | None
    ) -> None:
        self.peer = peer
        self.pc = pc
        self.main = main
        self.under = under
        self.under_on = False


class Peers:
    """The peer connections of one local connection (at most one of each kind)."""

    def __init__(self) -> None:
        self.listener: Listener | None = None
        self.publisher: Publisher | None = None
        self.lock = asyncio.Lock()
        self.offers = TokenBucket(OFFER_RATE, OFFER_BURST)
        self.closed = False


# --- the room ------------------------------------------------------------------------------------


class MediaRoom:
    """Audio of one room on this node. Created by :class:`MediaNode`; lives as long as the hub."""

    def __init__(self, hub: RoomHub, node: MediaNode) -> None:
        self.hub = hub
        self.node = node
        self.metrics: Metrics = hub.metrics
        self.room = hub.room
        self.routes = audio.routes(hub.state)
        self.peers: dict[str, Peers] = {}
        self.publishers: dict[str, Publisher] = {}
        self.sources: dict[str, Source] = {}
        self.recorder: Recorder | None = None
        self._bus_tasks: dict[str, asyncio.Task[None]] = {}
        self._bus_next: dict[str, tuple[int, float]] = {}
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._outbox_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pubs = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._spawn(self._publish_bus(), "audio-bus-out")
        self._spawn(self._levels(), "audio-levels")
        self.on_events("", [])

    async def close(self) -> None:
        for conn in list(self.peers):
            await self._close_peers(conn)
        if self.recorder is not None:
            with contextlib.suppress(HemicycleError):
                await self.hub.submit(
                    Actor(self.node.node_name, SYSTEM),
                    "recording.stop",
                    {},
                    f"recording.stop:{self.recorder.id}",
                )
            self._stop_recorder()
        for task in [*self._tasks, *self._bus_tasks.values()]:
            task.cancel()
        for task in [*self._tasks, *self._bus_tasks.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._bus_tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.room}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- signalling ----------------------------------------------------------------------------

    async def handle(self, peer: Peer, data: dict[str, Any]) -> None:
        """One ``rtc.*``/``rec.*`` message from a connection (sessions.py routes them here)."""
        kind = data["type"]
        cid = arg_str(data, "cid", max_len=64)
        assert cid is not None
        peers = self.peers.setdefault(peer.person["conn"], Peers())
        if kind == "rtc.offer":
            if not peers.offers.take():
                raise RateLimited("too many offers; wait a moment")
            # Negotiation takes a while (ICE gathering): the socket keeps reading meanwhile.
            self._spawn(self._offer_task(peer, peers, cid, data), "rtc-offer")
        elif kind == "rtc.under":
            on = data.get("on")
            if not isinstance(on, bool):
                raise BadArgs("'on' must be true or false")
            if peers.listener is None:
                raise Refused("there is no listening connection", code="not_listening")
            peers.listener.under_on = on
            self._reroute()
            self._reply(peer, cid)
        elif kind == "rtc.close":
            which = data.get("pc")
            if which not in ("listen", "publish"):
                raise BadArgs("'pc' is 'listen' or 'publish'")
            async with peers.lock:
                await (
                    self._close_listener(peers)
                    if which == "listen"
                    else self._close_publisher(peers)
                )
            self._reply(peer, cid)
        elif kind in ("rec.start", "rec.stop"):
            await self._record(peer, cid, kind == "rec.start")
        else:
            raise UnknownType(f"unknown message type {kind!r}")

    def _reply(self, peer: Peer, cid: str, **fields: Any) -> None:
        peer.send({"type": "reply", "cid": cid, "ok": True, **fields})

    async def _offer_task(self, peer: Peer, peers: Peers, cid: str, data: dict[str, Any]) -> None:
        try:
            async with peers.lock:
                if peers.closed:
                    return
                fields = await self._offer(peer, peers, data)
            self.metrics.rtc_offers.labels("ok").inc()
            self._reply(peer, cid, **fields)
        except HemicycleError as exc:
            self.metrics.rtc_offers.labels(exc.code).inc()
            peer.send({"type": "reply", "cid": cid, "ok": False, **exc.to_wire()})
        except Exception as exc:  # aiortc raised something we did not foresee
            log.exception("room %s: offer failed", self.room)
            self.metrics.rtc_offers.labels("rtc_failed").inc()
            peer.send(
                {
                    "type": "reply",
                    "cid": cid,
                    "ok": False,
                    "code": "rtc_failed",
                    "message": f"the connection could not be set up: {exc}",
                }
            )

    async def _offer(self, peer: Peer, peers: Peers, data: dict[str, Any]) -> dict[str, Any]:
        purpose = data.get("purpose")
        if purpose not in ("listen", "publish"):
            raise BadArgs("'purpose' is 'listen' or 'publish'")
        sdp = arg_str(data, "sdp", max_len=MAX_SDP)
        assert sdp is not None
        lines, _ = check_offer(sdp, purpose)
        target = FLOOR
        on_air = True
        if purpose == "publish":
            target = arg_str(data, "target", max_len=16, default=FLOOR) or FLOOR
            on_air = audio.may_publish(self.hub.state, peer.person, target)
            await self._close_publisher(peers)
        else:
            await self._close_listener(peers)
        pc = RTCPeerConnection(self.node.config.rtc_configuration())
        self.metrics.peer_connections.labels(purpose).inc()
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise BadArgs(f"the offer was refused: {exc}", code="bad_sdp") from None
            if purpose == "publish":
                receiver = pc.getTransceivers()[0].receiver
                pub = Publisher(
                    f"{peer.person['conn']}.{self._next_pub()}", peer, target, pc, payload_type=0
                )
                passthrough.tap_receiver(receiver, lambda p: self._ingest(pub, p))
            else:
                pid = peer.person["pid"]
                # The tracks stay empty: DirectSender writes the packets; the senders only
                # need a track to negotiate and keep sending RTCP.
                senders = [pc.addTrack(passthrough.EncodedTrack()) for _ in range(lines)]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
            pt = answer_payload_type(answer)
        except BaseException:
            await pc.close()
            self.metrics.peer_connections.labels(purpose).dec()
            raise
        conn = peer.person["conn"]
        pc.on("connectionstatechange", lambda: self._on_pc_state(conn, pc))
        if purpose == "publish":
            pub.payload_type = pt
            peers.publisher = pub
            self.publishers[pub.pub] = pub
            log.info("room %s: %s publishes into %s", self.room, pub.pid, target)
            return {"sdp": answer, "pc": "publish", "target": target, "on_air": on_air}
        outlets = [Outlet(pid, passthrough.DirectSender(sender, pt)) for sender in senders]
        peers.listener = Listener(peer, pc, outlets[0], outlets[1] if len(outlets) > 1 else None)
        self._reroute()
        return {"sdp": answer, "pc": "listen", "tracks": lines}

    def _next_pub(self) -> int:
        self._pubs += 1
        return self._pubs

    def _on_pc_state(self, conn: str, pc: RTCPeerConnection) -> None:
        if pc.connectionState not in ("failed", "closed"):
            return
        peers = self.peers.get(conn)
        if peers is None:
            return
        for which, held in (("listen", peers.listener), ("publish", peers.publisher)):
            if held is not None and held.pc is pc:
                held.peer.send(
                    {
                        "type": "rtc.closed",
                        "pc": which,
                        "code": "ice_failed",
                        "message": "the media connection failed; offer again",
                    }
                )
                self._spawn(self._close_kind(peers, which), "rtc-close")

    async def _close_kind(self, peers: Peers, which: str) -> None:
        async with peers.lock:
            await (
                self._close_listener(peers) if which == "listen" else self._close_publisher(peers)
            )

    async def _close_listener(self, peers: Peers) -> None:
        listener, peers.listener = peers.listener, None
        if listener is None:
            return
        for outlet in (listener.main, listener.under):
            if outlet is not None:
                self._attach(outlet, None)
        self._subscriptions()
        await listener.pc.close()
        self.metrics.peer_connections.labels("listen").dec()

    async def _close_publisher(self, peers: Peers) -> None:
        pub, peers.publisher = peers.publisher, None
        if pub is None:
            return
        self.publishers.pop(pub.pub, None)
        await pub.pc.close()
        self.metrics.peer_connections.labels("publish").dec()

    async def _close_peers(self, conn: str) -> None:
        peers = self.peers.pop(conn, None)
        if peers is None:
            return
        async with peers.lock:
            peers.closed = True
            await self._close_listener(peers)
            await self._close_publisher(peers)

    async def leave(self, peer: Any) -> None:
        """The connection closed: close its peer connections and free their ports."""
        await self._close_peers(peer.person["conn"])

    # -- packets in --------------------------------------------------------------------------

    def _ingest(self, pub: Publisher, packet: RtpPacket) -> None:
        metrics = self.metrics.audio_in
        pub.received += 1
        if packet.payload_type != pub.payload_type:
            metrics.labels("codec").inc()
            return
        payload = packet.payload
        if not payload or len(payload) > MAX_PAYLOAD:
            metrics.labels("size").inc()
            return
        if not pub.bucket.take():
            metrics.labels("flood").inc()
            return
        level = pub.meter.measure(packet)
        if not self.routes.feeds(pub.pid, pub.target):
            metrics.labels("off_air").inc()
            return
        pub.seq += 1
        frame = Frame(pub.pub, pub.pid, pub.seq, packet.timestamp, payload, level)
        metrics.labels("forwarded").inc()
        source = self.sources.get(pub.target)
        if source is not None:
            self.metrics.audio_out.inc(source.push(frame, time.monotonic()))
        if len(self._outbox) >= OUTBOX:
            self._outbox.popleft()  # the bus is not keeping up: other nodes lose the oldest
            self.metrics.audio_bus.labels("dropped").inc()
        self._outbox.append((pub.target, frame.to_bus()))
        self._outbox_ready.set()

    async def _publish_bus(self) -> None:
        bus = self.hub.backends.bus
        counter = self.metrics.audio_bus.labels("out")
        warned = 0.0
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                source, data = self._outbox.popleft()
                try:
                    await bus.publish(bus_channel(self.room, source), data)
                    counter.inc()
                except Exception as exc:  # the bus is down: listeners elsewhere miss frames
                    self.metrics.audio_bus.labels("failed").inc()
                    now = time.monotonic()
                    if now - warned > 10:
                        warned = now
                        log.warning("room %s: audio frames not published: %s", self.room, exc)

    def _from_bus(self, name: str, data: bytes) -> None:
        try:
            frame = Frame.from_bus(data)
        except Exception:
            self.metrics.audio_bus.labels("bad").inc()
            return
        if frame.pub in self.publishers:
            return  # ours: already delivered locally
        self.metrics.audio_bus.labels("in").inc()
        now = time.monotonic()
        expected = self._bus_next.get(frame.pub)
        if expected is not None:
            if frame.seq < expected[0]:
                self.metrics.audio_bus_reordered.inc()
                return
            if frame.seq > expected[0]:
                self.metrics.audio_bus_lost.inc(frame.seq - expected[0])
        self._bus_next[frame.pub] = (frame.seq + 1, now)
        if not self.routes.feeds(frame.pid, name):
            return
        source = self.sources.get(name)
        if source is not None:
            self.metrics.audio_out.inc(source.push(frame, now))

    async def _subscribe(self, name: str) -> None:
        bus = self.hub.backends.bus
        async with bus.subscribe(bus_channel(self.room, name)) as frames:
            async for data in frames:
                self._from_bus(name, data)

    # -- routing ------------------------------------------------------------------------------

    def on_events(self, entry_id: str, events: list[Event]) -> None:
        self.routes = audio.routes(self.hub.state)
        self._reroute()
        self._check_publishers()
        rec = self.hub.state["audio"]["recording"]
        mine = rec is not None and rec["node"] == self.node.node_name
        if rec is not None and mine and self.recorder is None:
            self._start_recorder(rec)
        elif mine:
            self._record_every_source()  # a moderator may add a channel mid-recording
        elif self.recorder is not None:
            self._stop_recorder()

    def _reroute(self) -> None:
        routes = self.routes
        for peers in self.peers.values():
            listener = peers.listener
            if listener is None:
                continue
            person = listener.peer.person
            main, under = routes.hearing(person["pid"], person["role"])
            self._attach(listener.main, main)
            if listener.under is not None:
                self._attach(listener.under, under if listener.under_on else None)
        self._subscriptions()

    def _attach(self, outlet: Outlet, name: str | None) -> None:
        old = outlet.source
        if old is not None and old.name == name:
            return
        if old is not None:
            old.outlets.discard(outlet)
        outlet.source = None
        if name is not None:
            source = self._source(name)
            source.outlets.add(outlet)
            outlet.source = source

    def _source(self, name: str) -> Source:
        source = self.sources.get(name)
        if source is None:
            source = self.sources[name] = Source(name)
        return source

    def _subscriptions(self) -> None:
        """Hold a bus subscription exactly for the sources local outlets or the recorder use."""
        for name, source in list(self.sources.items()):
            if source.idle:
                del self.sources[name]
        for name in set(self._bus_tasks) - set(self.sources):
            self._bus_tasks.pop(name).cancel()
        for name in set(self.sources) - set(self._bus_tasks):
            self._bus_tasks[name] = asyncio.get_running_loop().create_task(
                self._subscribe(name), name=f"audio-sub-{self.room}-{name}"
            )

    def _check_publishers(self) -> None:
        """A speaker whose floor was taken back loses the microphone connection."""
        state = self.hub.state
        for peers in self.peers.values():
            pub = peers.publisher
            if pub is None or pub.target != FLOOR:
                continue
            try:
                audio.may_publish(state, pub.peer.person, FLOOR)
            except Refused as exc:
                pub.peer.send({"type": "rtc.closed", "pc": "publish", **exc.to_wire()})
                self._spawn(self._close_kind(peers, "publish"), "rtc-close")

    # -- levels, recording ------------------------------------------------------------------------

    async def _levels(self) -> None:
        """Publish the level of each local microphone a few times a second (VU meters)."""
        ticks = 0
        while True:
            await asyncio.sleep(LEVELS_EVERY)
            ticks += 1
            if ticks % ORPHAN_CHECK_TICKS == 0:
                await self._orphaned_recording()
            now = time.monotonic()
            for pub_id, (_, seen) in list(self._bus_next.items()):
                if now - seen > 60:
                    del self._bus_next[pub_id]
            self._count_drops()
            if not self.publishers:
                continue
            levels = {}
            for pub in self.publishers.values():
                levels[pub.pid] = {
                    "source": pub.target,
                    "db": -pub.meter.peak,
                    "on_air": self.routes.feeds(pub.pid, pub.target),
                }
                pub.meter.peak = 127
            with contextlib.suppress(Exception):
                # For the chair's board and the booths' consoles, not every listener.
                await self.hub.publish(
                    {"type": "ephemeral", "kind": "levels", "levels": levels, "to": LEVELS_TO}
                )

    async def _orphaned_recording(self) -> None:
        """A recording whose node died (no heartbeat) is stopped, so the room stops saying it
        is recorded; any node may do it, the ``recording.stop:<id>`` cid counts once."""
        rec = self.hub.state["audio"]["recording"]
        if rec is None or rec["node"] == self.node.node_name:
            return
        try:
            if await self.hub.backends.alive({rec["node"]}):
                return
            await self.hub.submit(
                Actor(self.node.node_name, SYSTEM),
                "recording.stop",
                {},
                f"recording.stop:{rec['id']}",
            )
            log.warning(
                "room %s: recording %s stopped, its node %s is gone",
                self.room,
                rec["id"],
                rec["node"],
            )
        except HemicycleError:
            pass
        except Exception as exc:  # the backend is away: try again later
            log.warning("room %s: cannot check the recording node: %s", self.room, exc)

    def _count_drops(self) -> None:
        dropped = 0
        for peers in self.peers.values():
            listener = peers.listener
            for outlet in (listener.main, listener.under) if listener is not None else ():
                if outlet is not None and isinstance(outlet.sink, passthrough.DirectSender):
                    dropped += outlet.sink.dropped
                    outlet.sink.dropped = 0
        if dropped:
            self.metrics.audio_listener_drops.inc(dropped)

    async def _record(self, peer: Peer, cid: str, start: bool) -> None:
        if peer.person["role"] != MODERATOR:
            raise Refused("only the chair may record", code="forbidden")
        actor = Actor(peer.person["pid"], SYSTEM, peer.person["conn"])
        if start:
            rid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)
            name, args = "recording.start", {"id": rid, "node": self.node.node_name}
        else:
            name, args = "recording.stop", {}
        outcome = await self.hub.submit(actor, name, args, f"{peer.person['conn']}:{cid}")
        if outcome.error is not None:
            peer.send({"type": "reply", "cid": cid, "ok": False, **outcome.error})
            return
        self._reply(peer, cid, **({"id": args["id"]} if start else {}))

    def _start_recorder(self, rec: Recording) -> None:
        from .recording import Recorder

        self.recorder = Recorder(self.node.recordings, self.room, rec["id"])
        self._record_every_source()

    def _record_every_source(self) -> None:
        recorder = self.recorder
        assert recorder is not None
        added = False
        for name in audio.sources(self.hub.state):
            if name not in recorder.taps:
                self._source(name).taps.append(recorder.tap(name))
                added = True
        if added:
            self._subscriptions()

    def _stop_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        for name, tap in recorder.taps.items():
            source = self.sources.get(name)
            if source is not None and tap in source.taps:
                source.taps.remove(tap)
        recorder.stop()
        self._subscriptions()


class MediaNode(Feature):
    """The audio feature: one :class:`MediaRoom` per room, the ``rtc.*``/``rec.*`` frames."""

    name = "audio"
    slice = audio.SLICE
    FRAMES = ("rtc.offer", "rtc.under", "rtc.close", "rec.start", "rec.stop")

    def __init__(self, config: MediaConfig, recordings: str) -> None:
        self.node_name = "node"
        """The node's name (set when it starts): recordings say which node writes them."""
        self.config = config
        self.recordings = recordings
        self.rooms: dict[str, MediaRoom] = {}

    def frames(self) -> Mapping[str, FrameHandler]:
        return dict.fromkeys(self.FRAMES, self.handle)

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        return {"media": {"ice_servers": [dict(s) for s in self.config.ice_servers]}}

    async def handle(self, session: Session, data: dict[str, Any]) -> None:
        room = self.rooms.get(session.hub.room)
        if room is None:
            raise Unavailable("this node has no audio for this room")
        await room.handle(session, data)

    def folded(self, hub: RoomHub, entry_id: str, events: list[Event]) -> None:
        room = self.rooms.get(hub.room)
        if room is not None:
            room.on_events(entry_id, events)

    async def left(self, hub: RoomHub, sink: Sink) -> None:
        room = self.rooms.get(hub.room)
        if room is not None:
            await room.leave(sink)

    @contextlib.asynccontextmanager
    async def running(self, node: Host) -> AsyncIterator[None]:
        passthrough.self_check()
        self.node_name = node.name
        async with contextlib.AsyncExitStack() as stack:
            for hub in node.hubs.values():
                room = self.rooms[hub.room] = MediaRoom(hub, self)
                stack.push_async_callback(room.close)
                await room.start()
            try:
                yield
            finally:
                self.rooms = {}
