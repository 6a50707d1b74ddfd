"""Stage video of one room on one node, and the video feature that holds one per room.

The same path as audio, for media of another kind (:data:`VIDEO`), never decoded::

    camera ─RTP (3 simulcast layers l/m/h, or 1)─► VideoPublisher (vhook.tap_video)
        │ drop: codec, size, flood, over the bitrate or size cap, not on stage (stage.py)
        ├──► local VideoSource ─► VideoOutlet per viewer tile ─► VideoSender ─► RTP (+RTX)
        │                     └─► taps (a recording)
        └──► bus hc:{room}:video:<source>:<q>, one channel per layer ─► other nodes

    viewer ── video.show {slots:[{slot, source, quality}]} ─► outlets (last-N: only what
              a tile shows is sent; the layer from the tile's quality, REMB and loss)
    viewer PLI / a new tile / a layer switch ─► KeyframeAsk (per publisher layer, merged)
              ─► PLI to the local publisher, or over hc:{room}:video:kf to its node

Who may publish is the fold's (``stage.video_publishers``), re-read after every fold; a
publisher who loses the right is closed (``video.closed``). The sources that publish, with
their flowing layers, are announced by each node on ``hc:{room}:video:sources`` every
second; each node tells its connections the union (``video.sources``). Frames on the wire:
docs/protocol.md, "Video".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from .. import stage
from ..errors import BadArgs, RateLimited, Refused, UnknownType
from ..node.feature import FrameHandler
from ..protocol import pack, unpack
from ..types import arg_str
from . import passthrough, vhook
from .buslink import BusLink
from .forward import QUALITIES, KeyframeAsk, Tap, VideoOutlet, VideoPacket, VideoSource
from .kind import VIDEO
from .perroom import PerRoom, Tasks
from .setup import MediaConfig
from .signalling import MAX_SDP, Peer, reply_to_offer
from .vpeers import VideoConfig, VideoPublisher, Viewer, VPeers, check_offer

if TYPE_CHECKING:
    from ..node.hub import RoomHub
    from ..node.metrics import Metrics

log = logging.getLogger(__name__)

FRAMES = ("video.offer", "video.show", "video.close")
TICK = 0.25
"""How often outlets re-aim, merged keyframe requests go out, the REMB is sent (s)."""
ANNOUNCE = 1.0
GONE = 3.5
"""A node whose announcement is this old no longer publishes anything (s)."""
SOURCES = ("camera", "screen")


class VideoRoom:
    """Video of one room on this node. ``async with`` it for as long as the hub lives."""

    def __init__(self, hub: RoomHub, media: MediaConfig, config: VideoConfig) -> None:
        self.hub = hub
        self.room = hub.room
        self.node = hub.node
        self.media = media
        self.config = config
        self.metrics: Metrics = hub.metrics
        self.rights = stage.video_publishers(hub.state)
        self.peers: dict[str, VPeers] = {}
        self.publishers: dict[str, VideoPublisher] = {}
        """Local publishers by source id."""
        self.sources: dict[str, VideoSource] = {}
        self.asks = KeyframeAsk()
        self.remote: dict[str, tuple[float, dict[str, list[str]], list[str]]] = {}
        """node → (when heard, {source: flowing layers}, the layers it needs ``source:q``)."""
        self.asked: dict[str, float] = {}
        """``source:q`` → when another node asked its keyframe (it needs the layer now)."""
        self.needed: set[str] = set()
        """The local layers ``source:q`` that some other node needs: only these cross."""
        self._needs: list[str] = []
        self.told: dict[str, list[str]] | None = None
        self.bus = BusLink(
            hub.backends.bus,
            self.room,
            VIDEO,
            self.metrics,
            self._deliver,
            lambda pub: any(p.pub == pub.rsplit(":", 1)[0] for p in self.publishers.values()),
            decode=VideoPacket.from_bus,
        )
        self._tasks = Tasks(self.room)
        self._spawn = self._tasks.spawn
        self._stack = contextlib.AsyncExitStack()

    def channel(self, name: str) -> str:
        return f"hc:{{{self.room}}}:video:{name}"

    async def __aenter__(self) -> VideoRoom:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.bus)
            stack.push_async_callback(self._close_all)
            self._spawn(self._ticks(), "video-ticks")
            self._spawn(self._listen(self.channel("kf"), self._keyframe_asked), "video-kf")
            self._spawn(self._listen(self.channel("sources"), self._announced), "video-src")
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _close_all(self) -> None:
        for conn in list(self.peers):
            await self.leave(conn)
        await self._tasks.cancel()

    # -- frames ----------------------------------------------------------------------------

    async def handle(self, peer: Peer, data: dict[str, Any]) -> None:
        kind = data["type"]
        cid = arg_str(data, "cid", max_len=64)
        assert cid is not None
        peers = self.peers.setdefault(peer.person["conn"], VPeers())
        if kind == "video.offer":
            if not peers.offers.take():
                raise RateLimited("too many offers; wait a moment")
            self._spawn(self._offer_task(peer, peers, cid, data), "video-offer")
        elif kind == "video.show":
            self._show(peers, data)
            _reply(peer, cid)
        elif kind == "video.close":
            which = data.get("pc")
            if which not in ("view", *SOURCES):
                raise BadArgs("'pc' is 'view', 'camera' or 'screen'")
            async with peers.lock:
                await self._close(peers, which)
            _reply(peer, cid)
        else:
            raise UnknownType(f"unknown message type {kind!r}")

    def _show(self, peers: VPeers, data: dict[str, Any]) -> None:
        viewer = peers.viewer
        if viewer is None:
            raise Refused("there is no viewing connection", code="not_viewing")
        slots = data.get("slots")
        if not isinstance(slots, list) or len(slots) > len(viewer.outlets):
            raise BadArgs(f"'slots' is a list of at most {len(viewer.outlets)} tiles")
        shown: dict[int, tuple[str, str]] = {}
        for item in slots:
            if not isinstance(item, dict):
                raise BadArgs("each slot is {slot, source, quality}")
            slot, quality = item.get("slot"), item.get("quality", "h")
            source = arg_str(item, "source", max_len=80)
            if not isinstance(slot, int) or not 0 <= slot < len(viewer.outlets) or slot in shown:
                raise BadArgs(f"'slot' is a distinct number below {len(viewer.outlets)}")
            if quality not in QUALITIES:
                raise BadArgs("'quality' is 'h', 'm' or 'l'")
            assert source is not None
            shown[slot] = (source, quality)
        now = time.monotonic()
        for n, outlet in enumerate(viewer.outlets):
            source, quality = shown.get(n, (None, "h"))
            self._attach(outlet, source)
            outlet.show(source, quality)
            if source is not None:
                outlet.retarget(self._source(source).layers, now)
        self._subscriptions()

    async def _offer_task(self, peer: Peer, peers: VPeers, cid: str, data: dict[str, Any]) -> None:
        async def make() -> dict[str, Any] | None:
            async with peers.lock:
                return None if peers.closed else await self._offer(peer, peers, data)

        await reply_to_offer(peer, cid, self.metrics, f"room {self.room}: video offer", make)

    async def _offer(self, peer: Peer, peers: VPeers, data: dict[str, Any]) -> dict[str, Any]:
        purpose = data.get("purpose")
        if purpose not in ("publish", "view"):
            raise BadArgs("'purpose' is 'publish' or 'view'")
        # A browser's offer takes ~2.5 kB per video m-section.
        sdp = arg_str(data, "sdp", max_len=MAX_SDP + 6_000 * self.config.max_tiles)
        assert sdp is not None
        what = data.get("source", "camera")
        right: str | None = None
        if purpose == "publish":
            if what not in SOURCES:
                raise BadArgs("'source' is 'camera' or 'screen'")
            right = self.may_publish(peer.person["pid"], what)
        lines = check_offer(sdp, purpose, self.config, self.media.allow_loopback)
        await self._close(peers, what if purpose == "publish" else "view")
        pc = RTCPeerConnection(self.media.rtc_configuration())
        self.metrics.peer_connections.labels(f"video-{purpose}").inc()
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise BadArgs(f"the offer was refused: {exc}", code="bad_sdp") from None
            if purpose == "publish":
                pub = VideoPublisher(peer, what, pc, self.config, right)
                pub.rids = vhook.offered_rids(sdp)
                pub.receiver = pc.getTransceivers()[0].receiver
                vhook.tap_video(
                    pub.receiver,
                    lambda p: self.ingest(pub, p),
                    pub.ssrc_of,
                    lambda ssrc, seq: self._first(pub, ssrc, seq),
                )
            else:
                senders = [pc.addTrack(vhook.IdleVideoTrack()) for _ in range(lines)]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
        except BaseException:
            await pc.close()
            self.metrics.peer_connections.labels(f"video-{purpose}").dec()
            raise
        conn = peer.person["conn"]
        pc.on("connectionstatechange", lambda: self._on_pc_state(conn, pc))
        if purpose == "publish":
            pts, _ = vhook.payload_types(answer, 0)
            pub.pts = {pt: name for name, pt in pts.items()}
            peers.publishers[what] = pub
            self.publishers[pub.source] = pub
            self._announce_soon()
            log.info("room %s: %s publishes %s", self.room, pub.pid, pub.source)
            return {"sdp": vhook.answer_simulcast(answer, pub.rids), "source": pub.source}
        outlets = []
        for n, sender in enumerate(senders):
            pts, rtx = vhook.payload_types(answer, n)
            outlets.append(self._outlet(peer.person["pid"], sender, pts, rtx))
        peers.viewer = Viewer(peer, pc, outlets)
        peer.send({"type": "video.sources", "sources": self.known()})
        return {"sdp": answer, "pc": "view", "tiles": lines}

    def _outlet(
        self, pid: str, sender: Any, pts: dict[str, int], rtx: dict[int, int]
    ) -> VideoOutlet:
        """A viewer's tile: an outlet writing through a VideoSender whose RTCP feeds it."""
        outlet = VideoOutlet(pid, _Unbound(), self._ask)

        def estimate(bps: float) -> None:
            outlet.estimate = bps

        def loss(fraction: float) -> None:
            outlet.loss = fraction

        outlet.sink = vhook.VideoSender(
            sender, pts, rtx, lambda: self._viewer_pli(outlet), estimate, loss
        )
        return outlet

    def may_publish(self, pid: str, what: str) -> str:
        """The right ``pid`` publishes ``what`` under (a signer's camera: ``sign:<lang>``)."""
        rights = self.rights.get(pid, frozenset())
        if what in rights:
            return what
        sign = sorted(r for r in rights if r.startswith("sign:"))
        if what == "camera" and sign:
            return sign[0]
        raise Refused(f"you may not publish your {what} now", code="not_on_stage")

    # -- packets ---------------------------------------------------------------------------

    def ingest(self, pub: VideoPublisher, packet: RtpPacket) -> None:
        """One packet of a local publisher: check it, then forward and publish it."""
        counter = self.metrics.video_in
        codec = pub.pts.get(packet.payload_type)
        if codec is None:
            counter.labels("codec").inc()
            return
        payload = packet.payload
        if not payload or len(payload) > VIDEO.max_payload:
            counter.labels("size").inc()
            return
        if not pub.packets.take() or not pub.bytes.spend(len(payload)):
            counter.labels("flood").inc()
            return
        q = pub.layer_of.get(packet.ssrc)
        if q is None:
            rid = packet.extensions.rtp_stream_id
            if pub.rids:
                if rid not in pub.rids:
                    counter.labels("unknown_layer").inc()
                    return
                q = rid
            else:
                q = "h"  # one encoding: the only layer there is
            pub.layer_of[packet.ssrc] = q
        if pub.right not in self.rights.get(pub.pid, frozenset()):
            counter.labels("off_stage").inc()
            return
        try:
            seq = pub.seq[q] = pub.seq.get(q, 0) + 1
            p = VideoPacket(
                f"{pub.pub}:{q}",
                pub.pid,
                pub.source,
                q,
                seq,
                packet.sequence_number,
                packet.timestamp,
                bool(packet.marker),
                payload,
                codec,
            )
            size = p.picture_size()  # a keyframe's: VP8's frame header, H.264's SPS
        except ValueError:
            counter.labels("malformed").inc()
            return
        if size is not None and (
            size[0] > self.config.max_width or size[1] > self.config.max_height
        ):
            counter.labels("too_large").inc()
            self._close_soon(pub, "over_cap", f"{size[0]}x{size[1]} is over the room's cap")
            return
        counter.labels("forwarded").inc()
        self._push(pub.source, p, time.monotonic())
        layer = f"{pub.source}:{q}"
        if layer in self.needed:
            self.bus.send(layer, p)

    def _first(self, pub: VideoPublisher, ssrc: int, seq: int) -> bool:
        """Whether a publisher's packet arrives for the first time (vhook.tap_video asks,
        before aiortc handles it); a repeat is counted and dropped: forward.Arrivals."""
        if pub.first(ssrc, seq):
            return True
        self.metrics.video_in.labels("repeated").inc()
        return False

    def _deliver(self, name: str, frame: Any, now: float) -> None:
        p: VideoPacket = frame
        source, _, _ = name.rpartition(":")
        p.source = source
        owner, _, what = source.partition(":")
        if owner == "sign" or (owner == p.pid and what in self.rights.get(p.pid, ())):
            self._push(source, p, now)  # this node's replica agrees they may publish

    def _push(self, name: str, p: VideoPacket, now: float) -> None:
        source = self.sources.get(name)
        if source is not None:
            self.metrics.video_out.inc(source.push(p, now))

    # -- keyframes -------------------------------------------------------------------------

    def _ask(self, source: str, q: str) -> None:
        """An outlet needs a keyframe of ``source``'s layer ``q``: merged, then sent."""
        if self.asks.ask((source, q), time.monotonic()):
            self._request(source, q)
        else:
            self.metrics.video_keyframes.labels("merged").inc()

    def _viewer_pli(self, outlet: VideoOutlet) -> None:
        if outlet.source is not None and outlet.layer is not None:
            self._ask(outlet.source, outlet.layer)

    def _request(self, source: str, q: str) -> None:
        pub = self.publishers.get(source)
        if pub is None:
            self.metrics.video_keyframes.labels("bus").inc()
            data = pack([source, q])
            self._spawn(self.hub.backends.bus.publish(self.channel("kf"), data), "video-kf-out")
            return
        ssrc = pub.ssrc_of(q)
        if ssrc is not None and pub.receiver is not None:
            self.metrics.video_keyframes.labels("sent").inc()
            vhook.ask_keyframe(pub.receiver, ssrc)

    def _keyframe_asked(self, data: bytes) -> None:
        try:
            source, q = unpack(data)
        except Exception:
            return
        if isinstance(source, str) and source in self.publishers and q in QUALITIES:
            self.asked[f"{source}:{q}"] = time.monotonic()
            self._needed()
            if self.asks.ask((source, q), time.monotonic()):
                self._request(source, q)
            else:
                self.metrics.video_keyframes.labels("merged").inc()

    # -- routing ---------------------------------------------------------------------------

    def _attach(self, outlet: VideoOutlet, name: str | None) -> None:
        old = outlet.source
        if old == name:
            return
        if old is not None and old in self.sources:
            self.sources[old].outlets.discard(outlet)
        if name is not None:
            self._source(name).outlets.add(outlet)

    def _source(self, name: str) -> VideoSource:
        source = self.sources.get(name)
        if source is None:
            source = self.sources[name] = VideoSource(name)
            now = time.monotonic()
            for at, sources, _ in self.remote.values():  # another node's: its layers flow
                qs = sources.get(name)
                if isinstance(qs, list) and now - at < GONE:
                    source.layers.announced(qs, at)
        return source

    def _subscriptions(self) -> None:
        """Bus subscriptions exactly for the remote layers local outlets and taps need."""
        wanted = []
        for name, source in list(self.sources.items()):
            if source.idle and name not in self.publishers:
                del self.sources[name]
                continue
            if name in self.publishers:
                continue
            layers = source.needs() if not source.taps else set(QUALITIES)
            wanted += [f"{name}:{q}" for q in layers]
        self.bus.subscribe_exactly(wanted)
        if sorted(wanted) != self._needs:
            self._needs = sorted(wanted)
            self._announce_soon()

    def folded(self) -> None:
        """Re-read who may publish; close the publishers who may no longer."""
        self.rights = stage.video_publishers(self.hub.state)
        for pub in list(self.publishers.values()):
            if pub.right not in self.rights.get(pub.pid, frozenset()):
                self._close_soon(pub, "not_on_stage", "you are no longer on stage")

    # -- the sources that publish ------------------------------------------------------------

    def local(self, now: float) -> dict[str, list[str]]:
        out = {}
        for name in self.publishers:
            source = self.sources.get(name)
            out[name] = source.layers.flowing(now) if source is not None else []
        return out

    def known(self) -> dict[str, list[str]]:
        """Every source publishing in the room (all nodes) with its flowing layers."""
        now = time.monotonic()
        out = dict(self.local(now))
        for at, sources, _ in self.remote.values():
            if now - at < GONE:
                out.update(sources)
        return out

    def _announce_soon(self) -> None:
        self._spawn(self._announce(), "video-announce")

    async def _announce(self) -> None:
        for name in self.publishers:
            self._source(name)
        data = pack([self.node, self.local(time.monotonic()), self._needs])
        with contextlib.suppress(Exception):
            await self.hub.backends.bus.publish(self.channel("sources"), data)
        self._tell()

    def _announced(self, data: bytes) -> None:
        try:
            node, sources, needs = unpack(data)
        except Exception:
            return
        if (
            not isinstance(node, str)
            or not isinstance(sources, dict)
            or not isinstance(needs, list)
            or node == self.node
        ):
            return
        now = time.monotonic()
        self.remote[node] = (now, sources, [n for n in needs if isinstance(n, str)])
        self._needed()
        for name, qs in sources.items():
            if name in self.sources and isinstance(qs, list):
                self.sources[name].layers.announced(qs, now)
        self._tell()

    def _needed(self) -> None:
        """The local layers other nodes need: announced, or asked for a moment ago."""
        now = time.monotonic()
        needed = {n for at, _, needs in self.remote.values() if now - at < GONE for n in needs}
        needed |= {n for n, at in self.asked.items() if now - at < GONE}
        for n in [n for n, at in self.asked.items() if now - at >= GONE]:
            del self.asked[n]
        for node in [n for n, (at, _, _) in self.remote.items() if now - at >= 10 * GONE]:
            del self.remote[node]  # a node that stopped (or died) long ago
        self.needed = needed

    def _tell(self) -> None:
        """Send ``video.sources`` to this node's connections when the set changed."""
        known = self.known()
        names = {k: sorted(v) for k, v in known.items()}
        if names == self.told:
            return
        self.told = names
        message = {"type": "video.sources", "sources": names}
        for sink in tuple(self.hub.sinks):
            getattr(sink, "send")(message)  # noqa: B009 (sessions.Session.send)

    async def _listen(self, channel: str, handle: Any) -> None:
        async with self.hub.backends.bus.subscribe(channel) as messages:
            async for data in messages:
                handle(data)

    async def _ticks(self) -> None:
        last_announce = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            for key in self.asks.due(now):
                self._request(*key)
            for peers in self.peers.values():
                if peers.viewer is not None:
                    for outlet in peers.viewer.outlets:
                        if outlet.source is not None:
                            outlet.retarget(self._source(outlet.source).layers, now)
            self._subscriptions()
            for pub in self.publishers.values():
                if pub.receiver is not None:
                    vhook.send_remb(pub.receiver, self.config.max_bitrate, list(pub.layer_of))
            self._needed()
            if now - last_announce >= ANNOUNCE:
                last_announce = now
                await self._announce()
            else:
                self._tell()

    # -- closing ---------------------------------------------------------------------------

    def _close_soon(self, pub: VideoPublisher, code: str, message: str) -> None:
        peers = self.peers.get(pub.peer.person["conn"])
        if peers is None or peers.publishers.get(pub.what) is not pub:
            return
        pub.peer.send({"type": "video.closed", "pc": pub.what, "code": code, "message": message})
        self.publishers.pop(pub.source, None)  # nothing more is forwarded from now on

        async def close() -> None:
            async with peers.lock:
                if peers.publishers.get(pub.what) is pub:
                    await self._close(peers, pub.what)

        self._spawn(close(), "video-close")

    def _on_pc_state(self, conn: str, pc: RTCPeerConnection) -> None:
        if pc.connectionState not in ("failed", "closed"):
            return
        peers = self.peers.get(conn)
        if peers is None:
            return
        for pub in list(peers.publishers.values()):
            if pub.pc is pc:
                self._close_soon(pub, "ice_failed", "the video connection failed; offer again")

    async def _close(self, peers: VPeers, which: str) -> None:
        if which == "view":
            viewer, peers.viewer = peers.viewer, None
            if viewer is None:
                return
            for outlet in viewer.outlets:
                self._attach(outlet, None)
                outlet.source = None
            self._subscriptions()
            await viewer.pc.close()
            self.metrics.peer_connections.labels("video-view").dec()
            return
        pub = peers.publishers.pop(which, None)
        if pub is None:
            return
        if self.publishers.get(pub.source) is pub:
            del self.publishers[pub.source]
        await pub.pc.close()
        self.metrics.peer_connections.labels("video-publish").dec()
        await self._announce()

    async def leave(self, conn: str) -> None:
        peers = self.peers.pop(conn, None)
        if peers is None:
            return
        async with peers.lock:
            peers.closed = True
            for which in ("view", *SOURCES):
                await self._close(peers, which)

    # -- taps ------------------------------------------------------------------------------

    def tap(self, name: str, tap: Tap) -> None:
        """Give ``tap`` every packet (every layer) of source ``name`` until :meth:`untap`;
        a recording takes the layer it wants and remuxes it, never decoding."""
        self._source(name).taps.append(tap)
        self._subscriptions()

    def untap(self, name: str, tap: Tap) -> None:
        source = self.sources.get(name)
        if source is not None and tap in source.taps:
            source.taps.remove(tap)
            self._subscriptions()

    def ask_keyframe(self, name: str, q: str) -> None:
        """A tap (a recording) waits for a keyframe of ``name``'s layer ``q``: merged with
        the viewers' requests, then sent to the publisher."""
        self._ask(name, q)


class _Unbound:
    def write(self, codec: str, seq: int, ts: int, marker: bool, payload: bytes) -> bool:
        return False


def _reply(peer: Peer, cid: str, **fields: Any) -> None:
    peer.send({"type": "reply", "cid": cid, "ok": True, **fields})


class VideoNode(PerRoom[VideoRoom]):
    """The video feature: one :class:`VideoRoom` per room, the ``video.*`` frames."""

    name = "video"
    missing = "this node has no video for this room"

    def __init__(self, media: MediaConfig, config: VideoConfig | None = None) -> None:
        super().__init__()
        self.media = media
        self.config = config or VideoConfig()

    def frames(self) -> Mapping[str, FrameHandler]:
        return dict.fromkeys(FRAMES, self.handle)

    def welcome(self, hub: RoomHub) -> Mapping[str, Any]:
        room = self.rooms.get(hub.room)
        sources = room.known() if room is not None else {}
        cap = {"max_width": self.config.max_width, "max_height": self.config.max_height}
        return {"video": {"sources": sources, "max_tiles": self.config.max_tiles, **cap}}

    def make_room(self, hub: RoomHub) -> VideoRoom:
        return VideoRoom(hub, self.media, self.config)

    def self_check(self) -> None:
        passthrough.self_check()
        vhook.self_check()
        vhook.allow_rid()
