"""Real VP8 for the video tests and bench/video.py: frames encoded once by libvpx (PyAV).

:func:`vp8_frames` encodes a few seconds of a moving test picture at one size, with a
keyframe every ``gop`` frames, so tests and the benchmark forward real encoder output
without encoding while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from server.client import Client
from server.media import vhook, vp8
from server.protocol import pack, unpack

from .audio_helpers import connected


@cache
def vp8_frames(
    width: int,
    height: int,
    count: int,
    *,
    gop: int = 30,
    bitrate: int = 1_500_000,
    grain: bool = False,
    tint: int = 0,
) -> tuple[tuple[bytes, bool], ...]:
    """``count`` encoded frames ``(data, keyframe)`` of a picture whose colour moves.

    Kept in the temp directory between runs: encoding 720p takes a while on a busy machine.
    """
    path = (
        Path(tempfile.gettempdir())
        / f"hc-vp8-{width}x{height}-{count}-{gop}-{bitrate}-{grain:d}-{tint}.bin"
    )
    with contextlib.suppress(OSError, ValueError):
        return tuple((bytes(d), bool(k)) for d, k in unpack(path.read_bytes()))
    frames = _encode(width, height, count, gop, bitrate, grain, tint)
    tmp = path.with_suffix(f".{os.getpid()}")
    tmp.write_bytes(pack([list(f) for f in frames]))
    tmp.replace(path)
    return frames


def _encode(
    width: int, height: int, count: int, gop: int, bitrate: int, grain: bool, tint: int
) -> tuple[tuple[bytes, bool], ...]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.bit_rate = bitrate
    enc.gop_size = gop
    enc.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
    }
    out: list[tuple[bytes, bool]] = []
    n = 0
    while len(out) < count:
        frame = av.VideoFrame(width, height, "yuv420p")
        edge = (n * 4) % width
        # A bar that moves right, over grain (changing every frame) when ``grain``: the
        # encoder then has a camera's work, and frames a camera's sizes.
        noise = random.Random(n).randbytes(width) if grain else bytes(width)
        for i, (plane, fill) in enumerate(
            zip(frame.planes, (0, (n * 8 + tint) % 256, 128), strict=True)
        ):
            stride = plane.line_size
            if i == 0:
                rows = b"".join(
                    bytes(
                        (x + y) % 64 * grain + (16 if c < edge else 160)
                        for c, x in enumerate(noise)
                    )
                    + bytes(stride - width)
                    for y in range(plane.height)
                )
            else:
                rows = (bytes([fill]) * plane.width + bytes(stride - plane.width)) * plane.height
            plane.update(rows)
        frame.pts = n
        for packet in enc.encode(frame):
            out.append((bytes(packet), bool(packet.is_keyframe)))
        n += 1
    return tuple(out[:count])


@cache
def h264_frames(
    width: int, height: int, count: int, *, gop: int = 30
) -> tuple[tuple[bytes, ...], ...]:
    """``count`` H.264 frames (libx264, constrained baseline as browsers send), each as the
    RTP payloads of RFC 6184 packetization mode 1: the parameter sets in a STAP-A, small NAL
    units single, large ones in FU-A fragments."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.bit_rate = LAYER_BITS.get({320: "l", 640: "m"}.get(width, "h"), 1_500_000)
    enc.profile = "Baseline"
    enc.options = {
        "tune": "zerolatency",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
    }
    out: list[tuple[bytes, ...]] = []
    n = 0
    while len(out) < count:
        frame = av.VideoFrame(width, height, "yuv420p")
        for i, plane in enumerate(frame.planes):
            fill = (n * 8) % 256 if i == 1 else 128 if i else 16 + (n * 4) % 200
            plane.update(bytes([fill]) * plane.line_size * plane.height)
        frame.pts = n
        for packet in enc.encode(frame):
            out.append(tuple(h264_packetize(bytes(packet))))
        n += 1
    return tuple(out[:count])


def h264_packetize(annex_b: bytes, size: int = 1100) -> list[bytes]:
    """RTP payloads of one Annex B access unit (RFC 6184 §5.7.1 STAP-A, §5.8 FU-A)."""
    nals = [n.lstrip(b"\x00") for n in annex_b.split(b"\x00\x00\x01") if n.strip(b"\x00")]
    out: list[bytes] = []
    sets = [n for n in nals if n[0] & 0x1F in (7, 8)]
    if sets:  # SPS and PPS together, ahead of the IDR picture, as a browser sends them
        out.append(bytes([0x18]) + b"".join(len(n).to_bytes(2, "big") + n for n in sets))
    for nal in (n for n in nals if n[0] & 0x1F not in (7, 8)):
        if len(nal) <= size:
            out.append(nal)
            continue
        head, body = nal[0], nal[1:]
        for at in range(0, len(body), size):
            start, end = at == 0, at + size >= len(body)
            fu = (0x80 if start else 0) | (0x40 if end else 0) | head & 0x1F
            out.append(bytes([head & 0xE0 | 28, fu]) + body[at : at + size])
    return out


# -- aiortc peers: a simulcast camera sending pre-encoded VP8, a viewer that records ----------

CONFIG = RTCConfiguration(iceServers=[])
LAYER_SIZES = {"l": (320, 180), "m": (640, 360), "h": (1280, 720)}
LAYER_BITS = {"l": 150_000, "m": 500_000, "h": 1_500_000}


@dataclass
class Sent:
    q: str
    seq: int
    payload: bytes
    ts: int = 0
    marker: bool = False


class Camera:
    """A publishing peer connection that sends pre-encoded VP8 as a simulcast camera does:
    one SSRC per layer, the RID header extension, 15-bit PictureID and TL0PICIDX, and a
    keyframe (the next one in its loop) when the node asks for one (PLI)."""

    def __init__(
        self,
        client: Client,
        pc: RTCPeerConnection,
        layers: tuple[str, ...],
        tint: int = 0,
        codec: str = "vp8",
    ) -> None:
        self.client, self.pc, self.layers, self.tint = client, pc, layers, tint
        self.codec = codec
        """``vp8``, or ``h264`` (libx264 frames, no VP8 descriptor to number)."""
        self.reply: dict[str, Any] = {}
        self.ssrc = {q: random.randrange(1, 1 << 32) for q in layers}
        self.seq = {q: random.randrange(1 << 16) for q in layers}
        self.ts0 = {q: random.randrange(1 << 32) for q in layers}
        self.pic = {q: random.randrange(1 << 15) for q in layers}
        self.index = {q: 0 for q in layers}
        self.plis = {q: 0 for q in layers}
        self.want_key = {q: False for q in layers}
        self.sent: list[Sent] = []
        self.frames = 0
        self.stopped = False
        self.pt = 96
        self.rtx_pt = 97
        self.lose_next_h = False
        """Hold back the next packet of layer h, then send it as RTX (repaired RID)."""
        self.rtx_ssrc = random.randrange(1, 1 << 32)
        self.rtx_seq = 0
        self.rtx_ssrcs = {q: random.randrange(1, 1 << 32) for q in layers}
        """Each layer's own RTX SSRC, as Chromium's (send_rtx)."""
        self.rtx_seqs = {q: 0 for q in layers}
        self.resent: list[bytes] = []
        self.nacked = 0
        """Packets the node asked again (NACK) and this camera sent again as RTX."""
        self.padding = 0
        """After each frame, send this many of layer l's last packets again as RTX, as
        Chromium's pacer pads its uplink ("redundant payload padding")."""

    @property
    def source(self) -> str:
        return str(self.reply["source"])

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        """The node's RTCP for our layers' SSRCs (we registered as their 'sender')."""
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4):
            for q, ssrc in self.ssrc.items():
                if ssrc == packet.media_ssrc:
                    self.plis[q] += 1
                    self.want_key[q] = True
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            # As a browser does: the packets lost on the way to the node, again as RTX.
            q = next((q for q, s in self.ssrc.items() if s == packet.media_ssrc), None)
            lost = set(packet.lost)
            for sent in [s for s in self.sent[-2000:] if s.q == q and s.seq in lost]:
                self.nacked += 1
                await self.send_rtx(sent)

    def advance(self, q: str) -> int:
        """The index of layer ``q``'s next frame in its 60-frame loop: the next one, or the
        next keyframe (both loops have one at 0 and at 30) when the node asked for one."""
        n = self.index[q]
        if self.want_key[q]:
            self.want_key[q] = False
            n = 0 if n <= 1 else (30 if n <= 30 else 60) % 60
        self.index[q] = (n + 1) % 60
        return n

    def next_frame(self, q: str) -> bytes:
        """The next encoded VP8 frame of layer ``q``."""
        frames = vp8_frames(*LAYER_SIZES[q], 60, gop=30, bitrate=LAYER_BITS[q], tint=self.tint)
        data, _key = frames[self.advance(q)]
        return data

    async def send_frame(self) -> None:
        sender = self.pc.getTransceivers()[0].sender
        dtls = sender.transport
        header_map = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map")  # noqa: B009
        mid = getattr(sender, "_RTCRtpSender__mid")  # noqa: B009
        pt = self.pt
        for q in self.layers:
            if self.codec == "h264":
                payloads = list(h264_frames(*LAYER_SIZES[q], 60, gop=30)[self.advance(q)])
            else:
                payloads = vp8.packetize(
                    self.next_frame(q), self.pic[q], tl0picidx=self.frames & 0xFF, tid=0, size=1100
                )
                self.pic[q] = (self.pic[q] + 1) & 0x7FFF
            for i, payload in enumerate(payloads):
                self.seq[q] = (self.seq[q] + 1) & 0xFFFF
                packet = RtpPacket(
                    payload_type=pt,
                    sequence_number=self.seq[q],
                    timestamp=(self.ts0[q] + 3000 * self.frames) & 0xFFFFFFFF,
                    ssrc=self.ssrc[q],
                    marker=i == len(payloads) - 1,
                    payload=payload,
                )
                packet.extensions.mid = mid
                packet.extensions.rtp_stream_id = q
                self.sent.append(Sent(q, self.seq[q], payload, packet.timestamp, packet.marker))
                if q == "h" and self.lose_next_h and not vp8.parse(payload).keyframe:  # VP8
                    self.lose_next_h = False  # "lost": it goes only as a retransmission
                    self.rtx_seq += 1
                    rtx = RtpPacket(
                        payload_type=self.rtx_pt,
                        sequence_number=self.rtx_seq,
                        timestamp=packet.timestamp,
                        ssrc=self.rtx_ssrc,
                        marker=packet.marker,
                        payload=self.seq[q].to_bytes(2, "big") + payload,
                    )
                    rtx.extensions.mid = mid
                    rtx.extensions.repaired_rtp_stream_id = q
                    await dtls._send_rtp(rtx.serialize(header_map))
                    self.resent.append(payload)
                    continue
                await dtls._send_rtp(packet.serialize(header_map))
        low = [s for s in self.sent[-40:] if s.q == "l"]
        for again in low[-self.padding :] if self.padding else ():
            await self.send_rtx(again)
        self.frames += 1

    async def send_rtx(self, sent: Sent) -> None:
        """Send a packet again as RTX on the RTX SSRC, naming its layer by repaired RID."""
        sender = self.pc.getTransceivers()[0].sender
        header_map = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map")  # noqa: B009
        self.rtx_seqs[sent.q] = seq = (self.rtx_seqs[sent.q] + 1) & 0xFFFF
        rtx = RtpPacket(
            payload_type=self.rtx_pt,
            sequence_number=seq,
            timestamp=sent.ts,
            ssrc=self.rtx_ssrcs[sent.q],
            marker=sent.marker,
            payload=sent.seq.to_bytes(2, "big") + sent.payload,
        )
        rtx.extensions.mid = getattr(sender, "_RTCRtpSender__mid")  # noqa: B009
        rtx.extensions.repaired_rtp_stream_id = sent.q
        await sender.transport._send_rtp(rtx.serialize(header_map))

    async def play(self, frames: int, fps: float = 30.0) -> None:
        start = time.monotonic()
        for n in range(frames):
            if self.stopped:
                return
            try:
                await self.send_frame()
            except ConnectionError:  # the node closed us (a test of exactly that)
                self.stopped = True
                return
            delay = start + (n + 1) / fps - time.monotonic()
            if delay > 0:  # real-time pacing, as a camera sends
                await asyncio.sleep(delay)

    async def close(self) -> None:
        self.stopped = True
        await self.pc.close()


async def publish_camera(
    client: Client,
    what: str = "camera",
    layers: tuple[str, ...] = ("l", "m", "h"),
    *,
    expect_ok: bool = True,
    munge: Callable[[str], str] = lambda sdp: sdp,
    codec: str = "vp8",
    kind: type[Camera] = Camera,
) -> Camera:
    """Publish a camera; with ``codec="h264"`` it offers only H.264 (as a browser that
    prefers it, through setCodecPreferences) and sends libx264 frames."""
    vhook.allow_rid()  # this process is also the browser: its offer carries the RID extmap
    pc = RTCPeerConnection(CONFIG)
    transceiver = pc.addTransceiver(vhook.IdleVideoTrack(), direction="sendonly")
    if codec == "h264":
        for q in layers:  # encoded now, not while packets flow (it blocks the event loop)
            h264_frames(*LAYER_SIZES[q], 60, gop=30)
        caps = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences(
            [c for c in caps if c.mimeType.lower() in ("video/h264", "video/rtx")]
        )
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    if len(layers) > 1:
        sdp = sdp.rstrip("\r\n") + "\r\n" + "".join(f"a=rid:{q} send\r\n" for q in layers)
        sdp += f"a=simulcast:send {';'.join(layers)}\r\n"
    camera = kind(client, pc, layers, tint=100 if what == "screen" else 0, codec=codec)
    camera.reply = await client.rpc("video.offer", purpose="publish", source=what, sdp=munge(sdp))
    if not camera.reply["ok"]:
        await pc.close()
        if expect_ok:
            raise AssertionError(f"publish refused: {camera.reply}")
        return camera
    await pc.setRemoteDescription(RTCSessionDescription(camera.reply["sdp"], "answer"))
    await connected(pc)
    sender = pc.getTransceivers()[0].sender
    pts, rtx = vhook.payload_types(pc.remoteDescription.sdp, 0)
    camera.pt = pts[codec]
    camera.rtx_pt = rtx.get(camera.pt, 0)
    router = sender.transport._rtp_router
    for ssrc in camera.ssrc.values():
        router.senders[ssrc] = camera
    return camera


@dataclass
class Got:
    ssrc: int
    seq: int
    ts: int
    marker: bool
    payload: bytes
    at: float


@dataclass
class Eye:
    """A viewing peer connection: records every RTP packet per tile."""

    client: Client
    pc: RTCPeerConnection
    tiles: dict[int, list[Got]] = field(default_factory=dict)

    def on(self, tile: int) -> list[Got]:
        return self.tiles.setdefault(tile, [])

    async def show(self, *slots: tuple[int, str, str]) -> dict[str, Any]:
        reply = await self.client.rpc(
            "video.show", slots=[{"slot": s, "source": src, "quality": q} for s, src, q in slots]
        )
        assert reply["ok"], reply
        return reply

    async def close(self) -> None:
        await self.pc.close()


async def view(client: Client, tiles: int = 2) -> Eye:
    pc = RTCPeerConnection(CONFIG)
    for _ in range(tiles):
        pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    eye = Eye(client, pc)
    for tile, transceiver in enumerate(pc.getTransceivers()):

        def record(packet: RtpPacket, tile: int = tile) -> None:
            eye.on(tile).append(
                Got(
                    packet.ssrc,
                    packet.sequence_number,
                    packet.timestamp,
                    bool(packet.marker),
                    packet.payload,
                    time.monotonic(),
                )
            )

        vhook.tap_video(transceiver.receiver, record)
    reply = await client.rpc("video.offer", purpose="view", sdp=pc.localDescription.sdp)
    if not reply["ok"]:
        await pc.close()
        raise AssertionError(f"view refused: {reply}")
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await connected(pc)
    return eye


def starts(got: list[Got]) -> list[vp8.Vp8]:
    """The descriptors of the frames' first packets a tile received."""
    return [d for d in (vp8.parse(g.payload) for g in got) if d.start]
