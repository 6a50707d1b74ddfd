"""WebRTC signalling of one room's media: ``rtc.*`` frames and the peer connections they make.

Each local connection has at most one publishing and one listening peer connection
(:class:`Peers`). ``rtc.offer`` (rate-limited, negotiated in a task so the socket keeps
reading during ICE gathering) makes one; a listening one may be *held*: connected ahead of
the click that starts the sound, carrying nothing until ``rtc.hold`` releases it;
``rtc.under`` turns the floor under an interpretation on or off; ``rtc.close`` (or a failed
ICE connection, or the socket closing) closes one. ``rtc.ice`` answers the connection's ICE
servers with TURN credentials minted for its person, and the node sends fresh ones
(an ``rtc.ice`` message) before those expire, for as long as the connection lasts. A
publisher's packets go to the room (:meth:`Router.ingest`); a listener's tracks are
:class:`~server.media.relay.Outlet` s the room attaches to its sources. No
decision about who may publish or what a listener hears is taken here: the room answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from ..audio import FLOOR, FLOOR_MICS
from ..errors import BadArgs, HemicycleError, RateLimited, Refused, UnknownType
from ..node.throttle import TokenBucket
from ..types import Actor, arg_str
from . import passthrough
from .kind import Kind
from .perroom import Tasks
from .relay import LevelMeter, Outlet
from .setup import (
    MediaConfig,
    answer_payload_type,
    check_offer,
    dtx_for,
    with_opus_dtx,
    with_opus_fec,
)

if TYPE_CHECKING:
    from ..node.metrics import Metrics
    from .workers import RemotePeer, WorkerPool

log = logging.getLogger(__name__)

MAX_SDP = 20_000
OFFER_RATE, OFFER_BURST = 1.0, 5.0
DROPS_EVERY = 1.0
"""How often the listeners' send-queue drops are added to the metrics."""
FRAMES = ("rtc.ice", "rtc.offer", "rtc.hold", "rtc.under", "rtc.close")
RENEW_AT = 0.8
"""Share of the TURN credentials' lifetime after which the node sends a connection fresh
ones (``rtc.ice``). coturn checks a credential's expiry only when a session authenticates
anew (an allocation keeps its key: docs/deploy.md, "TURN"), so a call outlives its
credential; a page needs valid ones for its *next* allocation: a new peer connection after a
network change or a failure, which it makes with what it holds, without asking first."""
NO_PATH_AFTER = 10.0
"""Seconds after its answer a peer connection that is not connected counts as having no
media path: a listener is then one of the room's listeners without audio. The page gives
up at the same time and says why (static/reach.js)."""
CLOSE_UNCONNECTED_AFTER = 30.0
"""Seconds after which a never-connected peer connection is closed: aiortc never fails one
by itself (it waits for more candidates, which Chromium's offer does not end), and each
holds ports."""


class Peer(Protocol):
    """What the media layer needs of a connection (sessions.Session is one)."""

    person: dict[str, Any]
    actor: Actor

    def send(self, message: dict[str, Any]) -> None: ...


class Publisher:
    """One publishing track: a receive-only peer connection whose packets feed one source."""

    def __init__(
        self, kind: Kind, pub: str, peer: Peer, target: str, pc: RTCPeerConnection
    ) -> None:
        self.pub = pub
        self.peer = peer
        self.pid: str = peer.person["pid"]
        self.target = target
        self.pc = pc
        self.payload_type = 0
        """Set once the answer is made: packets of any other payload type are dropped."""
        self.seq = 0
        self.bucket = TokenBucket(kind.packet_rate, kind.packet_burst)
        self.meter = LevelMeter() if kind.levels else None


class Listener:
    """One person's listening peer connection: what they hear and the floor underneath.

    Each is a group of ``lanes`` tracks (outlets): on the floor, lane ``i`` carries the
    ``i``-th of the microphones speaking at once (relay.FloorLanes); a channel uses lane 0.
    """

    def __init__(
        self,
        peer: Peer,
        pc: RTCPeerConnection | RemotePeer,
        main: list[Outlet],
        under: list[Outlet],
        remote: RemotePeer | None = None,
    ) -> None:
        self.peer = peer
        self.pc = pc
        self.main = main
        self.under = under
        self.under_on = False
        self.on_hold = False
        """Connected ahead of the click: its outlets carry nothing until ``rtc.hold`` off."""
        self.remote = remote
        """Held by a media worker (server/media/workers.py): no local outlets, routed there."""

    @property
    def outlets(self) -> list[Outlet]:
        return [*self.main, *self.under]


class Peers:
    """The peer connections of one local connection (at most one of each kind)."""

    def __init__(self) -> None:
        self.listener: Listener | None = None
        self.publisher: Publisher | None = None
        self.lock = asyncio.Lock()
        self.offers = TokenBucket(OFFER_RATE, OFFER_BURST)
        self.closed = False
        self.no_audio = False
        """This connection wants to listen but its last listening connection found no path."""
        self.renewing: asyncio.Task[Any] | None = None
        """Sends fresh TURN credentials before the last ones expire (:data:`RENEW_AT`)."""


class Router(Protocol):
    """What signalling asks of the room (``room.MediaRoom`` is one)."""

    def may_publish(self, person: dict[str, Any], target: str) -> bool:
        """Whether ``person`` is heard at once in ``target``; raise ``Refused`` if not allowed."""
        ...

    def ingest(self, pub: Publisher, packet: RtpPacket) -> None: ...

    def reroute(self) -> None:
        """Attach every listener's outlets to what they hear now."""
        ...

    def detach(self, outlets: list[Outlet]) -> None: ...


class Signalling:
    """The peer connections of one room's local connections. ``async with`` it."""

    def __init__(
        self,
        room: str,
        kind: Kind,
        config: MediaConfig,
        metrics: Metrics,
        router: Router,
        workers: WorkerPool | None = None,
    ) -> None:
        self.room = room
        self.workers = workers
        """Where listening peer connections go (None: this process holds them)."""
        self.kind = kind
        self.config = config
        self.metrics = metrics
        self.router = router
        self.peers: dict[str, Peers] = {}
        self.publishers: dict[str, Publisher] = {}
        """Local publishers by id (``<conn>.<n>``)."""
        self._tasks = Tasks(self.room)
        self._spawn = self._tasks.spawn
        self._pubs = 0

    async def __aenter__(self) -> Signalling:
        self._spawn(self._count_drops(), "rtc-drops")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in list(self.peers):
            await self.leave(conn)
        await self._tasks.cancel()

    def listeners(self) -> Iterator[Listener]:
        for peers in self.peers.values():
            if peers.listener is not None:
                yield peers.listener

    # -- frames ------------------------------------------------------------------------------

    async def handle(self, peer: Peer, data: dict[str, Any]) -> None:
        """One ``rtc.*`` frame from a connection; its reply carries the frame's ``cid``."""
        kind = data["type"]
        cid = arg_str(data, "cid", max_len=64)
        assert cid is not None
        peers = self.peers.setdefault(peer.person["conn"], Peers())
        if kind == "rtc.ice":
            # TURN credentials minted now for this person (server/media/turn.py), renewed
            # before they expire while the connection lasts.
            _reply(peer, cid, **self._ice(peer))
            turn = self.config.turn
            if turn is not None and peers.renewing is None and not peers.closed:
                peers.renewing = asyncio.get_running_loop().create_task(
                    self._renew_ice(peer, turn.ttl * RENEW_AT), name=f"rtc-ice-{self.room}"
                )
        elif kind == "rtc.offer":
            if not peers.offers.take():
                raise RateLimited("too many offers; wait a moment")
            # Negotiation takes a while (ICE gathering): the socket keeps reading meanwhile.
            self._spawn(self._offer_task(peer, peers, cid, data), "rtc-offer")
        elif kind == "rtc.hold":
            on = data.get("on")
            if not isinstance(on, bool):
                raise BadArgs("'on' must be true or false")
            listener = peers.listener
            if listener is None:
                raise Refused("there is no listening connection", code="not_listening")
            conn = peer.person["conn"]
            if listener.on_hold and not on:  # the click: now it is this person's audio
                self._replace_others(peer.person["pid"], conn, "listen")
                if listener.pc.connectionState != "connected":  # counted from now if no path
                    self._spawn(self._watch(conn, listener.pc, "listen"), "rtc-watch")
            listener.on_hold = on
            self.router.reroute()
            _reply(peer, cid)
        elif kind == "rtc.under":
            on = data.get("on")
            if not isinstance(on, bool):
                raise BadArgs("'on' must be true or false")
            if peers.listener is None:
                raise Refused("there is no listening connection", code="not_listening")
            peers.listener.under_on = on
            self.router.reroute()
            _reply(peer, cid)
        elif kind == "rtc.close":
            which = data.get("pc")
            if which not in ("listen", "publish"):
                raise BadArgs("'pc' is 'listen' or 'publish'")
            await self.close(peers, which)
            if which == "listen":
                peers.no_audio = False  # stopped listening on purpose
            _reply(peer, cid)
        else:
            raise UnknownType(f"unknown message type {kind!r}")

    def _ice(self, peer: Peer) -> dict[str, Any]:
        turn = self.config.turn
        return {
            "ice_servers": self.config.ice_servers_for(peer.person["pid"]),
            "turn": turn is not None,
            "ttl": turn.ttl if turn is not None else None,
        }

    async def _renew_ice(self, peer: Peer, every: float) -> None:
        """Until the connection leaves: fresh ICE servers every ``every`` seconds."""
        while True:
            await asyncio.sleep(every)
            peer.send({"type": "rtc.ice", **self._ice(peer)})

    async def _offer_task(self, peer: Peer, peers: Peers, cid: str, data: dict[str, Any]) -> None:
        async def make() -> dict[str, Any] | None:
            async with peers.lock:
                return None if peers.closed else await self._offer(peer, peers, data)

        await reply_to_offer(peer, cid, self.metrics, f"room {self.room}: offer", make)

    async def _offer(self, peer: Peer, peers: Peers, data: dict[str, Any]) -> dict[str, Any]:
        purpose = data.get("purpose")
        if purpose not in ("listen", "publish"):
            raise BadArgs("'purpose' is 'listen' or 'publish'")
        sdp = arg_str(data, "sdp", max_len=MAX_SDP)
        assert sdp is not None
        lanes = 1
        hold = data.get("hold", False)
        if not isinstance(hold, bool) or (hold and purpose != "listen"):
            raise BadArgs("'hold' is true or false, and only for listening")
        if purpose == "listen":
            lanes = data.get("lanes", 1)
            if not (isinstance(lanes, int) and not isinstance(lanes, bool)) or not (
                1 <= lanes <= FLOOR_MICS
            ):
                raise BadArgs(f"'lanes' is 1 to {FLOOR_MICS}", code="bad_lanes")
        lines, _ = check_offer(
            sdp, purpose, self.kind, allow_loopback=self.config.allow_loopback, lanes=lanes
        )
        target = FLOOR
        on_air = True
        if purpose == "publish":
            target = arg_str(data, "target", max_len=16, default=FLOOR) or FLOOR
            on_air = self.router.may_publish(peer.person, target)
            await self._close_publisher(peers)
        else:
            await self._close_listener(peers)
            if self.workers is not None:
                return await self._listen_on_worker(peer, peers, sdp, lines, lanes, hold)
        pc = RTCPeerConnection(self.config.rtc_configuration())
        self.metrics.peer_connections.labels(purpose).inc()
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except Exception as exc:
                raise BadArgs(f"the offer was refused: {exc}", code="bad_sdp") from None
            if purpose == "publish":
                self._pubs += 1
                pub = Publisher(self.kind, f"{peer.person['conn']}.{self._pubs}", peer, target, pc)
                receiver = pc.getTransceivers()[0].receiver
                passthrough.tap_receiver(
                    receiver,
                    lambda p: self.router.ingest(pub, p),
                    reports=True,
                    clock_rate=self.kind.clock_rate,
                )
            else:
                # The tracks stay empty: DirectSender writes the packets; the senders only
                # need a track to negotiate and keep sending RTCP.
                senders = [pc.addTrack(passthrough.EncodedTrack()) for _ in range(lines)]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
            pt = answer_payload_type(answer, self.kind)
            if self.kind.codec == "opus":
                answer = with_opus_fec(answer, pt)
                if purpose == "publish" and dtx_for(target):
                    answer = with_opus_dtx(answer, pt)
        except BaseException:
            await pc.close()
            self.metrics.peer_connections.labels(purpose).dec()
            raise
        conn = peer.person["conn"]
        pc.on("connectionstatechange", lambda: self._on_pc_state(conn, pc))
        self._spawn(self._watch(conn, pc, purpose), "rtc-watch")
        if not hold:  # a held one replaces the other window's audio only when released
            self._replace_others(peer.person["pid"], conn, purpose)
        if purpose == "publish":
            pub.payload_type = pt
            peers.publisher = pub
            self.publishers[pub.pub] = pub
            log.info("room %s: %s publishes into %s", self.room, pub.pid, target)
            return {"sdp": answer, "pc": "publish", "target": target, "on_air": on_air}
        pid = peer.person["pid"]
        outlets = [
            Outlet(pid, passthrough.DirectSender(sender, pt), n % lanes, lanes)
            for n, sender in enumerate(senders)
        ]
        peers.listener = Listener(peer, pc, outlets[:lanes], outlets[lanes:])
        peers.listener.on_hold = hold
        self.router.reroute()
        return {"sdp": answer, "pc": "listen", "tracks": lines, "lanes": lanes, "hold": hold}

    async def _listen_on_worker(
        self, peer: Peer, peers: Peers, sdp: str, lines: int, lanes: int, hold: bool
    ) -> dict[str, Any]:
        """The listening peer connection on a media worker; the node keeps its routing."""
        assert self.workers is not None
        pid, conn = peer.person["pid"], peer.person["conn"]
        self.metrics.peer_connections.labels("listen").inc()
        try:
            remote, answer = await self.workers.listen(self.room, pid, sdp, lines, lanes)
        except BaseException:
            self.metrics.peer_connections.labels("listen").dec()
            raise
        remote.on("connectionstatechange", lambda: self._on_pc_state(conn, remote))
        self._spawn(self._watch(conn, remote, "listen"), "rtc-watch")
        if not hold:  # a held one replaces the other window's audio only when released
            self._replace_others(pid, conn, "listen")
        peers.listener = Listener(peer, remote, [], [], remote=remote)
        peers.listener.on_hold = hold
        self.router.reroute()
        return {"sdp": answer, "pc": "listen", "tracks": lines, "lanes": lanes, "hold": hold}

    # -- closing ---------------------------------------------------------------------------

    def _replace_others(self, pid: str, conn: str, purpose: str) -> None:
        """One publishing and one listening peer connection per person on this node: a
        newer one (another window) replaces the older, which is told ``replaced``."""
        moved = {"code": "replaced", "message": "your audio moved to another window of yours"}
        for other_conn, peers in list(self.peers.items()):
            if other_conn == conn:
                continue
            held = peers.listener if purpose == "listen" else peers.publisher
            if held is not None and held.peer.person["pid"] == pid:
                if isinstance(held, Listener) and held.on_hold:
                    continue  # the other window is not listening: its warm one stays
                self.close_soon(peers, purpose, moved)

    def close_soon(self, peers: Peers, which: str, message: dict[str, Any]) -> None:
        """Tell the connection its ``which`` peer connection ends, and close it in a task."""
        held = peers.listener if which == "listen" else peers.publisher
        if held is not None:
            held.peer.send({"type": "rtc.closed", "pc": which, **message})
            self._spawn(self.close(peers, which), "rtc-close")

    def _on_pc_state(self, conn: str, pc: RTCPeerConnection | RemotePeer) -> None:
        peers = self.peers.get(conn)
        if peers is None:
            return
        if pc.connectionState == "connected":
            if peers.listener is not None and peers.listener.pc is pc:
                peers.no_audio = False
            return
        if pc.connectionState not in ("failed", "closed"):
            return
        failed = {"code": "ice_failed", "message": "the media connection failed; offer again"}
        for which, held in (("listen", peers.listener), ("publish", peers.publisher)):
            if held is not None and held.pc is pc:
                self.close_soon(peers, which, failed)

    async def _watch(self, conn: str, pc: RTCPeerConnection | RemotePeer, purpose: str) -> None:
        """Count a listener without a path after :data:`NO_PATH_AFTER` s; close a peer
        connection that never connected after :data:`CLOSE_UNCONNECTED_AFTER` s."""
        await asyncio.sleep(NO_PATH_AFTER)
        peers = self.peers.get(conn)
        if peers is None or pc.connectionState == "connected":
            return
        held = peers.listener if purpose == "listen" else peers.publisher
        if held is None or held.pc is not pc:
            return
        if purpose == "listen" and not getattr(held, "on_hold", False):
            peers.no_audio = True
        await asyncio.sleep(CLOSE_UNCONNECTED_AFTER - NO_PATH_AFTER)
        held = peers.listener if purpose == "listen" else peers.publisher
        if held is not None and held.pc is pc and pc.connectionState != "connected":
            self.close_soon(
                peers,
                purpose,
                {"code": "no_path", "message": "no network path for the audio was found"},
            )

    def reach(self) -> dict[str, int]:
        """How many local connections listen, and how many of them have no audio path."""
        listening = sum(
            1
            for p in self.peers.values()
            if (p.listener is not None and not p.listener.on_hold) or p.no_audio
        )
        return {"listening": listening, "no_audio": sum(p.no_audio for p in self.peers.values())}

    async def close(self, peers: Peers, which: str) -> None:
        async with peers.lock:
            if which == "listen":
                await self._close_listener(peers)
            else:
                await self._close_publisher(peers)

    async def _close_listener(self, peers: Peers) -> None:
        listener, peers.listener = peers.listener, None
        if listener is None:
            return
        self._add_drops(listener)
        if listener.remote is not None:
            listener.remote.forget()
        self.router.detach(listener.outlets)
        await listener.pc.close()
        self.metrics.peer_connections.labels("listen").dec()

    async def _close_publisher(self, peers: Peers) -> None:
        pub, peers.publisher = peers.publisher, None
        if pub is None:
            return
        self.publishers.pop(pub.pub, None)
        await pub.pc.close()
        self.metrics.peer_connections.labels("publish").dec()

    async def leave(self, conn: str) -> None:
        """The connection closed: close its peer connections and free their ports."""
        peers = self.peers.pop(conn, None)
        if peers is None:
            return
        if peers.renewing is not None:
            peers.renewing.cancel()
        async with peers.lock:
            peers.closed = True
            await self._close_listener(peers)
            await self._close_publisher(peers)

    # -- listeners' drops ------------------------------------------------------------------

    async def _count_drops(self) -> None:
        while True:
            await asyncio.sleep(DROPS_EVERY)
            for listener in self.listeners():
                self._add_drops(listener)

    def _add_drops(self, listener: Listener) -> None:
        dropped = 0
        for outlet in listener.outlets:
            if isinstance(outlet.sink, passthrough.DirectSender):
                dropped += outlet.sink.dropped
                outlet.sink.dropped = 0
        if dropped:
            self.metrics.audio_listener_drops.inc(dropped)


def _reply(peer: Peer, cid: str, **fields: Any) -> None:
    peer.send({"type": "reply", "cid": cid, "ok": True, **fields})


async def reply_to_offer(
    peer: Peer,
    cid: str,
    metrics: Metrics,
    what: str,
    make: Callable[[], Awaitable[dict[str, Any] | None]],
) -> None:
    """Answer one offer frame (audio's or video's) with what ``make`` returns (``None``: the
    connection went meanwhile, nothing to answer), or its error as a code; an exception aiortc
    raised that nobody foresaw is logged and answered ``rtc_failed``. Counted by outcome."""
    try:
        fields = await make()
        if fields is None:
            return
        metrics.rtc_offers.labels("ok").inc()
        _reply(peer, cid, **fields)
    except HemicycleError as exc:
        metrics.rtc_offers.labels(exc.code).inc()
        peer.send({"type": "reply", "cid": cid, "ok": False, **exc.to_wire()})
    except Exception as exc:  # aiortc raised something we did not foresee
        log.exception("%s failed", what)
        metrics.rtc_offers.labels("rtc_failed").inc()
        peer.send(
            {
                "type": "reply",
                "cid": cid,
                "ok": False,
                "code": "rtc_failed",
                "message": f"the connection could not be set up: {exc}",
            }
        )
