"""Video's hooks into aiortc (pinned like passthrough.py): encoded VP8/H.264 in and out.

What video needs beyond audio's hooks (../shared notes "video passthrough", verified with
aiortc 1.16 and Chromium 156):

- **In** (:func:`tap_video`): the tap replaces the receiver's *jitter buffer*, not its
  packet handler, so aiortc keeps sending receiver reports, NACKs and unwrapping RTX for
  the publisher. Tapping the handler (as audio does) starves a camera: without feedback
  Chromium holds its estimate at 300 kbit/s and sends 720p as 360p. The NACK generator is
  swapped for one per SSRC (simulcast puts three SSRCs on one receiver); aiortc's own
  bandwidth estimate is switched off and the room's cap is sent as REMB instead
  (:func:`send_remb`), so a camera sends its best layers from the first second.
- **Simulcast** (:func:`allow_rid`, :func:`answer_simulcast`): aiortc parses neither
  ``a=rid`` nor ``a=simulcast``. Adding the RID header extensions to aiortc's table and the
  ``a=rid:… recv`` / ``a=simulcast:recv`` lines to the answer is enough for Chromium to
  send all its encodings.
- **Out** (:class:`VideoSender`): passthrough's raw RTP writer with a history of the last
  :data:`HISTORY` packets; NACKs are answered with RTX (RFC 4588: libsrtp will not protect
  the same packet index twice), PLI/FIR/REMB/RR from the viewer go to callbacks.

:func:`self_check` names what an aiortc upgrade broke.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from aiortc import codecs as aiortc_codecs
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .passthrough import DirectSender, PassthroughBroken, source_of

RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
HISTORY = 1024
"""Packets kept per viewer track for retransmission (about 7 s of 720p)."""
CODECS = {"video/vp8": "vp8", "video/h264": "h264"}
"""The codecs forwarded (by SDP mime type, lower case) and their names on the path."""

_RECEIVER = "_RTCRtpReceiver__"
_NEEDS = (
    (RTCRtpReceiver, ("self.__jitter_buffer", "self.__nack_generator", "self.__rtcp_ssrc")),
    (RTCRtpReceiver, ("self.__rtx_ssrc", "async def _handle_rtp_packet")),
    (RTCRtpReceiver, ("self.__remote_bitrate_estimator", "def _send_rtcp_pli", "def _send_rtcp")),
    (RTCRtpSender, ("def _handle_rtcp_packet", "self._rtx_ssrc", "self.__rtx_payload_type")),
)


def self_check() -> None:
    """Raise :class:`PassthroughBroken` unless the hooked internals look as expected."""
    problems = []
    for cls, names in _NEEDS:
        source = source_of(cls)
        problems += [f"{cls.__name__} no longer has {n}" for n in names if n not in source]
    if "video" not in aiortc_codecs.HEADER_EXTENSIONS:
        problems.append("aiortc.codecs.HEADER_EXTENSIONS has no 'video'")
    if problems:
        raise PassthroughBroken("; ".join(problems))


def allow_rid() -> None:
    """Let aiortc negotiate the RID header extensions (once per process; idempotent)."""
    table = aiortc_codecs.HEADER_EXTENSIONS["video"]
    have = {e.uri for e in table}
    used = {e.id for e in table}
    for uri in (RID, REPAIRED_RID):
        if uri not in have:
            free = next(n for n in range(1, 15) if n not in used)
            used.add(free)
            table.append(RTCRtpHeaderExtensionParameters(id=free, uri=uri))


def offered_rids(sdp: str) -> list[str]:
    """The simulcast RIDs an offer sends (``a=rid:<rid> send``), in its order."""
    return re.findall(r"^a=rid:(\S+) send\b", sdp, flags=re.MULTILINE)


def answer_simulcast(answer: str, rids: list[str]) -> str:
    """The answer with ``a=rid:<rid> recv`` and ``a=simulcast:recv`` on its video m-section."""
    if not rids:
        return answer
    lines = answer.split("\r\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("m=")), None)
    end = end if end is not None else len(lines) - (1 if lines[-1] == "" else 0)
    extra = [f"a=rid:{rid} recv" for rid in rids] + [f"a=simulcast:recv {';'.join(rids)}"]
    return "\r\n".join(lines[:end] + extra + lines[end:])


def payload_types(sdp: str, index: int) -> tuple[dict[str, int], dict[int, int]]:
    """Of m-section ``index``: ``{codec: pt}`` of the forwarded codecs, ``{pt: rtx pt}``."""
    media = aiortc_sdp.SessionDescription.parse(sdp).media[index]
    pts: dict[str, int] = {}
    rtx: dict[int, int] = {}
    for c in media.rtp.codecs:
        name = CODECS.get(c.mimeType.lower())
        if name is not None and c.payloadType is not None and name not in pts:
            pts[name] = int(c.payloadType)
        apt = c.parameters.get("apt")
        if c.mimeType.lower() == "video/rtx" and isinstance(apt, int):
            rtx[apt] = int(c.payloadType or 0)
    return pts, rtx


# -- in --------------------------------------------------------------------------------------


class _Tap:
    """Stands in for the receiver's jitter buffer: hands every packet on, keeps none."""

    def __init__(self, on_packet: Callable[[RtpPacket], None]) -> None:
        self.on_packet = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.on_packet(packet)
        return False, None


class _NackPerSsrc:
    """aiortc's NACK generator, one per SSRC: simulcast layers have their own seq spaces."""

    def __init__(self) -> None:
        self.by_ssrc: dict[int, NackGenerator] = {}
        self.missing: set[int] = set()

    def add(self, packet: RtpPacket) -> bool:
        gen = self.by_ssrc.get(packet.ssrc)
        if gen is None:
            gen = self.by_ssrc[packet.ssrc] = NackGenerator()
        missed = bool(gen.add(packet))
        self.missing = gen.missing
        return missed


def tap_video(
    receiver: RTCRtpReceiver,
    on_packet: Callable[[RtpPacket], None],
    ssrc_of_rid: Callable[[str], int | None] | None = None,
    first: Callable[[int, int], bool] | None = None,
) -> None:
    """Hand every RTP packet (RTX unwrapped, in arrival order) to ``on_packet``, undecoded.

    Call after ``setRemoteDescription`` (the receiver exists). RTCP keeps flowing. With
    ``ssrc_of_rid`` (the SSRC a simulcast RID was first seen on), retransmissions of RID
    layers are unwrapped too: their RTX SSRC is in no ``a=ssrc`` line, so aiortc drops them
    ("RTX packet from unknown SSRC") until the repaired-RID header extension names the
    layer (RFC 8852 §3.2) and the pair is learnt here.

    With ``first(ssrc, seq)`` (``VideoPublisher.first``), a packet whose media SSRC and
    sequence number arrived before — Chromium's RTX padding, by the hundred a second — is
    dropped here, before aiortc unwraps, NACK-tracks and depayloads it.
    """
    setattr(receiver, f"{_RECEIVER}jitter_buffer", _Tap(on_packet))
    setattr(receiver, f"{_RECEIVER}nack_generator", _NackPerSsrc())
    setattr(receiver, f"{_RECEIVER}remote_bitrate_estimator", None)
    if ssrc_of_rid is None and first is None:
        return
    rtx_ssrc: dict[int, int] = getattr(receiver, f"{_RECEIVER}rtx_ssrc")
    handle = receiver._handle_rtp_packet

    async def learning(packet: RtpPacket, arrival_time_ms: int) -> None:
        rid = packet.extensions.repaired_rtp_stream_id
        if rid is not None and packet.ssrc not in rtx_ssrc and ssrc_of_rid is not None:
            media = ssrc_of_rid(rid)
            if media is not None:
                rtx_ssrc[packet.ssrc] = media
        if first is not None:
            media = rtx_ssrc.get(packet.ssrc)
            payload = packet.payload
            if media is None:
                if not first(packet.ssrc, packet.sequence_number):
                    return
            elif len(payload) >= 2 and not first(media, (payload[0] << 8) | payload[1]):
                return  # RFC 4588 §4: the original sequence number leads the payload
        await handle(packet, arrival_time_ms)

    setattr(receiver, "_handle_rtp_packet", learning)  # noqa: B010 (an instance override)


def ask_keyframe(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Send a PLI for ``ssrc`` to the publisher (RFC 4585 §6.3.1), in a task."""
    asyncio.get_running_loop().create_task(receiver._send_rtcp_pli(ssrc))


def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> None:
    """Tell the publisher the most it may send (REMB), in a task."""
    rtcp_ssrc = getattr(receiver, f"{_RECEIVER}rtcp_ssrc")
    if rtcp_ssrc is None or not ssrcs:
        return
    packet = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
    )
    asyncio.get_running_loop().create_task(receiver._send_rtcp(packet))


# -- out -------------------------------------------------------------------------------------


class IdleVideoTrack(MediaStreamTrack):
    """A video track that never yields: the sender negotiates and sends RTCP; the packets
    are written by :class:`VideoSender`."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._stopped)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._stopped.done():
            self._stopped.set_result(None)


class VideoSender(DirectSender):
    """One viewer track: writes forwarded packets, answers NACKs with RTX from its history.

    ``on_keyframe()`` is called when the viewer asks for a keyframe (PLI or FIR),
    ``on_estimate(bps)`` with each REMB, ``on_loss(fraction)`` with each receiver report.
    """

    HISTORY = HISTORY

    def __init__(
        self,
        sender: RTCRtpSender,
        pts: dict[str, int],
        rtx: dict[int, int],
        on_keyframe: Callable[[], None] = lambda: None,
        on_estimate: Callable[[float], None] = lambda bps: None,
        on_loss: Callable[[float], None] = lambda f: None,
    ) -> None:
        super().__init__(sender, next(iter(pts.values()), 96))
        self.pts = pts
        self.rtx = rtx
        self.on_keyframe = on_keyframe
        self.on_estimate = on_estimate
        self.on_loss = on_loss
        self._rtx_seq = 0
        self.retransmitted = 0
        self.nacked = 0
        self.keyframes_asked = 0
        original = sender._handle_rtcp_packet

        async def handle_rtcp(packet: Any) -> None:
            self.rtcp(packet)
            await original(packet)

        setattr(sender, "_handle_rtcp_packet", handle_rtcp)  # noqa: B010 (an instance override)

    def tile_state(self) -> Any:
        """The C writer, where this sender has one: ``forward.VideoOutlet`` keeps its
        re-basing in it, so that :meth:`tile_fast` can forward a layer's packets alone."""
        w = self._w
        return w if hasattr(w, "vp8") else None

    def tile_fast(self, codec: str) -> Callable[..., int] | None:
        """The C writer's ``vp8`` for a layer of ``codec`` (None: write through :meth:`write`)."""
        w = self.tile_state()
        pt = self.pts.get(codec)
        if w is None or pt is None:
            return None
        w.pt, w.ssrc, w.every = pt, self._ssrc, self.STATS_EVERY
        return w.vp8  # type: ignore[no-any-return]

    def write(self, codec: str, seq: int, ts: int, marker: bool, payload: bytes) -> bool:
        """Forward one packet; the writer keeps the last :data:`HISTORY` for :meth:`retransmit`."""
        pt = self.pts.get(codec)
        if pt is None or not self.ready():
            self._w.dropped += 1
            return False
        if not self._forward((marker << 7) | pt, seq, ts, self._ssrc, payload):
            return False
        self._countdown -= 1
        if not self._countdown:
            self._countdown = self.STATS_EVERY
            self._stats(ts)
        return True

    def rtcp(self, packet: Any) -> None:
        """One RTCP packet from the viewer for this track."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.nacked += len(packet.lost)
            for seq in packet.lost:
                self.retransmit(seq)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframes_asked += 1
            self.on_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.on_estimate(float(bitrate))
        elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self._ssrc:
                    self.on_loss(report.fraction_lost / 256)

    def retransmit(self, seq: int) -> bool:
        """Send packet ``seq`` again as RTX (RFC 4588 §4: the original seq, then the payload)."""
        kept = self._w.kept(seq)
        if kept is None or not self.ready():
            return False
        second, ts, payload, at = kept
        if self.sent - at > HISTORY:
            # A seq the viewer never got (lost before the node) whose number was last used
            # 65,536 packets ago: that old packet is not the one it misses.
            return False
        rtx_pt = self.rtx.get(second & 0x7F)
        rtx_ssrc = getattr(self._sender, "_rtx_ssrc", None)
        if rtx_pt is None or rtx_ssrc is None:
            return False
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        data = seq.to_bytes(2, "big") + payload
        if self.write_rtp((second & 0x80) | rtx_pt, self._rtx_seq, ts, rtx_ssrc, data):
            self.retransmitted += 1
            return True
        return False
