"""The only module that reaches into aiortc's internals: encoded Opus in, encoded Opus out.

aiortc (pinned to ``1.16.0`` in pyproject.toml) decodes every received RTP stream through a
jitter buffer and a decoder thread, and encodes every sent track. A relay needs neither:

- **In**: :func:`tap_receiver` replaces one receiver's ``_handle_rtp_packet`` (a private
  coroutine that ``RTCDtlsTransport._handle_rtp_data`` awaits for each SRTP-decrypted
  packet) by a callback that sees the parsed :class:`RtpPacket` — payload, sequence number,
  timestamp and the RFC 6464 audio level — and skips the jitter buffer (about 80 ms) and the
  decoder entirely.
- **Out**: :class:`EncodedTrack` is a public-API track whose ``recv()`` returns
  ``av.Packet``; ``RTCRtpSender`` then only packs it (``OpusEncoder.pack``), never encodes.
  That costs one sender task wake-up per packet per listener; the fan-out uses
  :class:`DirectSender` instead, which writes the RTP header, protects it with the
  connection's own SRTP session and hands it to the nominated ICE pair's socket, inside the
  fan-out loop (no task switch, ~4x less CPU per listener; docs/benchmarks.md). The sender
  keeps running for RTCP, and its sender-report counters are kept up to date.

:func:`self_check` verifies the private names this module relies on and is called when a
node starts media, so an aiortc upgrade that moves them fails at once with a message saying
what changed instead of silently decoding or dropping audio. tests/test_rtc_passthrough.py
covers both directions end to end.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc
import av
import pylibsrtp
from aiortc import clock
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

from . import rtpout

PINNED = "1.16.0"
PINNED_AIOICE = "0.13.0"
PINNED_PYLIBSRTP = "1.0.0"
OPUS_RATE = 48_000
TIME_BASE = fractions.Fraction(1, OPUS_RATE)

OnPacket = Callable[[RtpPacket], None]


class PassthroughBroken(RuntimeError):
    """aiortc no longer has the internals this module hooks (after an upgrade)."""


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


_SOURCE_LOCK = threading.Lock()
_SOURCES: dict[object, str] = {}


def source_of(obj: Any) -> str:
    """``inspect.getsource(obj)``, once per process and under a lock.

    ``getsource`` of a class parses its module with :mod:`ast`, and CPython 3.11 fails
    ("AST constructor recursion depth mismatch") when two threads parse at once — as
    nodes started in threads (the tests, a process with several nodes) do at start.
    """
    with _SOURCE_LOCK:
        if obj not in _SOURCES:
            _SOURCES[obj] = inspect.getsource(obj)
        return _SOURCES[obj]


def self_check() -> None:
    """Raise :class:`PassthroughBroken` unless the hooked internals look as expected."""
    problems = []
    for name, have, want in (
        ("aiortc", aiortc.__version__, PINNED),
        ("aioice", _version("aioice"), PINNED_AIOICE),
        ("pylibsrtp", _version("pylibsrtp"), PINNED_PYLIBSRTP),
    ):
        if have != want:
            problems.append(f"{name} is {have}, this hook was written for {want}")
    handler = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    if handler is None or not inspect.iscoroutinefunction(handler):
        problems.append("RTCRtpReceiver._handle_rtp_packet is gone or no longer a coroutine")
    else:
        params = list(inspect.signature(handler).parameters)
        if params[:3] != ["self", "packet", "arrival_time_ms"]:
            problems.append(f"RTCRtpReceiver._handle_rtp_packet{params} changed its signature")
    dispatch = getattr(RTCDtlsTransport, "_handle_rtp_data", None)
    if dispatch is None or "receiver._handle_rtp_packet(" not in source_of(dispatch):
        problems.append(
            "RTCDtlsTransport._handle_rtp_data no longer calls receiver._handle_rtp_packet"
        )
    if "self.__remote_streams[packet.ssrc].add(packet)" not in source_of(
        RTCRtpReceiver
    ) or "for ssrc, stream in self.__remote_streams.items()" not in source_of(
        RTCRtpReceiver._run_rtcp
    ):
        problems.append("RTCRtpReceiver no longer reports from __remote_streams")
    if not hasattr(RtpPacket(), "extensions") or not hasattr(RtpPacket().extensions, "audio_level"):
        problems.append("RtpPacket.extensions.audio_level is gone")
    for cls, names in _DIRECT_NEEDS:
        source = source_of(cls)
        problems += [f"{cls.__name__} no longer has {n}" for n in names if n not in source]
    if problems:
        raise PassthroughBroken("; ".join(problems))


_SENDER_STATS = ("__ntp_timestamp", "__rtp_timestamp", "__octet_count", "__packet_count")
_DIRECT_NEEDS: tuple[tuple[type, tuple[str, ...]], ...] = (
    (
        RTCRtpSender,
        (
            "self._ssrc",
            "self.__mid",
            "self.__rtp_header_extensions_map",
            *(f"self.{n}" for n in _SENDER_STATS),
        ),
    ),
    (RTCDtlsTransport, ("self._tx_srtp", "def state")),
    (RTCIceTransport, ("self._connection",)),
    (aioice.ice.Connection, ("self._nominated",)),
    (aioice.ice.CandidatePair, ("self.protocol", "def remote_addr")),
    (aioice.ice.StunProtocol, ("self.transport",)),
    (pylibsrtp.Session, ("self._cdata", "self._buffer", "self._srtp", "lib.srtp_protect,")),
)


def tap_receiver(
    receiver: RTCRtpReceiver, on_packet: OnPacket, *, reports: bool = False, clock_rate: int = 0
) -> None:
    """Hand every RTP packet ``receiver`` gets to ``on_packet`` instead of decoding it.

    Call after ``setRemoteDescription`` (the receiver exists) and before the connection
    carries media. ``on_packet`` runs on the event loop and must not block; RTCP (sender
    reports, BYE) still reaches the receiver as usual.

    With ``reports`` the packets also feed the receiver's statistics, from which aiortc
    sends RTCP receiver reports (RFC 3550 §6.4.2) about ``clock_rate`` RTP: without them the
    publisher never learns its uplink loses packets, and Chromium's Opus encoder adds in-band
    FEC only when its receiver reports show loss (docs/benchmarks.md, "Reach").
    """
    name = "_RTCRtpReceiver__remote_streams"
    streams: dict[int, StreamStatistics] = getattr(receiver, name)

    async def handle(packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        if receiver._enabled:
            if reports:
                stats = streams.get(packet.ssrc)
                if stats is None:
                    stats = streams[packet.ssrc] = StreamStatistics(clock_rate)
                stats.add(packet)
            on_packet(packet)

    setattr(receiver, "_handle_rtp_packet", handle)  # noqa: B010 (an instance override)


def tapped(receiver: RTCRtpReceiver) -> bool:
    return "_handle_rtp_packet" in vars(receiver)


class EncodedTrack(MediaStreamTrack):
    """An audio track that yields already-encoded Opus packets to an ``RTCRtpSender``.

    :meth:`push` queues ``(payload, timestamp)`` with the timestamp in 48 kHz samples;
    ``recv`` hands them to the sender as ``av.Packet``. At most ``limit`` packets wait; the
    oldest is dropped (and counted in :attr:`dropped`) when the sender falls behind.
    """

    kind = "audio"

    def __init__(self, limit: int = 50, on_drop: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._on_drop = on_drop
        self._queue: deque[tuple[bytes, int]] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        self.sent = 0

    def push(self, payload: bytes, timestamp: int, marker: bool = False) -> bool:
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
        self._queue.append((payload, timestamp))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def recv(self) -> Any:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.readyState != "live":
            raise MediaStreamError
        payload, timestamp = self._queue.popleft()
        packet = av.Packet(payload)
        packet.pts = timestamp
        packet.time_base = TIME_BASE
        self.sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _never() -> bool:
    return False


class DirectSender:
    """Sends already-encoded Opus for one ``RTCRtpSender`` straight from the caller.

    ``push(payload, timestamp)`` builds the RTP packet (this sender's SSRC, payload type, the
    ``mid`` header extension it negotiated), protects it with the connection's libsrtp
    session and writes it to the nominated ICE pair's socket — synchronously, in the
    caller's loop, through a writer of server/media/rtpout.py (C where it was built).
    Packets pushed before the connection is up are dropped (``push`` returns False). The
    sender's own task stays idle on its (empty) track and keeps sending RTCP sender reports,
    whose counters this class updates.
    """

    STATS_EVERY = 10
    HISTORY = 0
    """Packets the writer keeps for retransmission (``vhook.VideoSender``: a power of two)."""

    def __init__(self, sender: RTCRtpSender, payload_type: int) -> None:
        self._sender = sender
        self._pt = payload_type & 0x7F
        self._seq = random.randrange(1 << 15)
        self._origin = random.randrange(1 << 32)  # RFC 3550 §5.1: a random first timestamp
        self._w: Any = rtpout.writer(self.HISTORY)
        self._forward = self._w.forward
        self._dtls: RTCDtlsTransport | None = None
        self._session: Any = None
        self._closing: Callable[[], bool] = _never
        self._ssrc = sender._ssrc
        self._countdown = 1
        self.opus: Callable[[str, str, int, bytes, float], int] | None = None
        """The C writer's ``opus`` once :meth:`listen` made it a listening track."""

    @property
    def sent(self) -> int:
        """Packets of the stream written (retransmissions not counted)."""
        return int(self._w.sent)

    @property
    def dropped(self) -> int:
        """Packets not written (the connection not up, a full socket buffer), since the
        metrics last took them (they set it back to 0)."""
        return int(self._w.dropped)

    @dropped.setter
    def dropped(self, value: int) -> None:
        self._w.dropped = value

    @property
    def _octets(self) -> int:
        return int(self._w.octets)

    def _bind(self) -> bool:
        sender = self._sender
        dtls = sender.transport
        session = dtls._tx_srtp
        if dtls.state != "connected" or session is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        transport = pair.protocol.transport
        template = RtpPacket(payload_type=self._pt, ssrc=sender._ssrc)
        template.extensions.mid = getattr(sender, "_RTCRtpSender__mid")  # noqa: B009
        header_map = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map")  # noqa: B009
        prefix = template.serialize(header_map)[rtpout.HEADER.size :]
        first = 0x90 if prefix else 0x80
        closing = getattr(transport, "is_closing", _never)
        if closing():
            return False
        try:
            bound = rtpout.bind(self._w, transport, pair.remote_addr, session, first, prefix)
        except rtpout.Stale:  # closed between the two
            return False
        if bound:
            self._closing = closing
        else:  # a relayed pair: through the TURN transport's own sendto
            old = self._w
            if self.opus is not None:  # carry the track's numbering on in Python
                self._seq, self._origin, self.opus = old.seq, old.origin, None
            self._w = rtpout.to_python(old)
            self._forward = self._w.forward
            rtpout.bind(self._w, transport, pair.remote_addr, session, first, prefix)
            self._closing = _never
        self._dtls, self._session = dtls, session
        return True

    def push(self, payload: bytes, timestamp: int, marker: bool = False) -> bool:
        if not self.ready():
            self._w.dropped += 1
            return False
        seq = self._seq = (self._seq + 1) & 0xFFFF
        timestamp = (self._origin + timestamp) & 0xFFFFFFFF
        if not self._forward((marker << 7) | self._pt, seq, timestamp, self._ssrc, payload):
            return False
        self._countdown -= 1
        if not self._countdown:
            self._countdown = self.STATS_EVERY
            self._stats(timestamp)
        return True

    def listen(self, pid: str) -> Callable[[str, str, int, bytes, float], int] | None:
        """Make the C writer (where there is one) this listener's whole track: ``opus(pub,
        pid, ts, payload, now)`` then does what ``relay.Outlet.feed`` and :meth:`push` do,
        per frame, without Python per listener. Its result: 0 not sent, 1 sent, 2 sent and
        :meth:`report` is due, 3 not sent and nothing changed: bind (:meth:`ready`) and
        call again (``relay.Outlet.after``)."""
        w = self._w
        if not hasattr(w, "opus"):
            return None
        w.listen(pid, self._pt, self._ssrc, self._seq, self._origin, self.STATS_EVERY)
        self.opus = w.opus
        return self.opus

    def report(self) -> None:
        """After ``opus`` returned 2: the sender's report, and a check of the binding."""
        self._stats(self._w.last_ts)
        self.ready()

    def ready(self) -> bool:
        """Whether the connection is up (bound to its SRTP session and ICE pair) now."""
        dtls = self._dtls
        if dtls is None or dtls._tx_srtp is not self._session or self._w.error or self._closing():
            return self._bind()
        return True

    def write_rtp(self, second: int, seq: int, timestamp: int, ssrc: int, payload: bytes) -> bool:
        """Write one RTP packet (``second``: its marker bit and payload type byte) with this
        sender's header extensions, not counted as the stream's; call after :meth:`ready`.
        Other kinds' senders (``vhook.VideoSender``: RTX) write through this too."""
        return bool(self._w.write(second, seq, timestamp, ssrc, payload))

    def _stats(self, timestamp: int) -> None:
        """Keep the sender's RTCP sender reports truthful (RFC 3550 §6.4.1)."""
        s = self._sender
        setattr(s, "_RTCRtpSender__ntp_timestamp", clock.current_ntp_time())  # noqa: B010
        setattr(s, "_RTCRtpSender__rtp_timestamp", timestamp)  # noqa: B010
        setattr(s, "_RTCRtpSender__octet_count", self._octets)  # noqa: B010
        setattr(s, "_RTCRtpSender__packet_count", self.sent)  # noqa: B010
