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
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtcpPsfbPacket, RtpPacket

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


# -- aiortc peers: a simulcast camera sending pre-encoded VP8, a viewer that records ----------

CONFIG = RTCConfiguration(iceServers=[])
LAYER_SIZES = {"l": (320, 180), "m": (640, 360), "h": (1280, 720)}
LAYER_BITS = {"l": 150_000, "m": 500_000, "h": 1_500_000}


@dataclass
class Sent:
    q: str
    seq: int
    payload: bytes


class Camera:
    """A publishing peer connection that sends pre-encoded VP8 as a simulcast camera does:
    one SSRC per layer, the RID header extension, 15-bit PictureID and TL0PICIDX, and a
    keyframe (the next one in its loop) when the node asks for one (PLI)."""

    def __init__(
        self, client: Client, pc: RTCPeerConnection, layers: tuple[str, ...], tint: int = 0
    ) -> None:
        self.client, self.pc, self.layers, self.tint = client, pc, layers, tint
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
        self.resent: list[bytes] = []

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

    def next_frame(self, q: str) -> bytes:
        """The next encoded frame of layer ``q``: its loop's next, or its next keyframe when
        the node asked for one."""
        frames = vp8_frames(*LAYER_SIZES[q], 60, gop=30, bitrate=LAYER_BITS[q], tint=self.tint)
        n = self.index[q]
        if self.want_key[q]:
            self.want_key[q] = False
            n = 0 if n <= 1 else (30 if n <= 30 else 60) % 60
        data, _key = frames[n]
        self.index[q] = (n + 1) % 60
        return data

    async def send_frame(self) -> None:
        sender = self.pc.getTransceivers()[0].sender
        dtls = sender.transport
        header_map = getattr(sender, "_RTCRtpSender__rtp_header_extensions_map")  # noqa: B009
        mid = getattr(sender, "_RTCRtpSender__mid")  # noqa: B009
        pt = self.pt
        for q in self.layers:
            data = self.next_frame(q)
            payloads = vp8.packetize(
                data, self.pic[q], tl0picidx=self.frames & 0xFF, tid=0, size=1100
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
                self.sent.append(Sent(q, self.seq[q], payload))
                if q == "h" and self.lose_next_h and not vp8.parse(payload).keyframe:
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
        self.frames += 1

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
    kind: type[Camera] = Camera,
) -> Camera:
    vhook.allow_rid()  # this process is also the browser: its offer carries the RID extmap
    pc = RTCPeerConnection(CONFIG)
    pc.addTransceiver(vhook.IdleVideoTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    if len(layers) > 1:
        sdp = sdp.rstrip("\r\n") + "\r\n" + "".join(f"a=rid:{q} send\r\n" for q in layers)
        sdp += f"a=simulcast:send {';'.join(layers)}\r\n"
    camera = kind(client, pc, layers, tint=100 if what == "screen" else 0)
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
    camera.pt = pts["vp8"]
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
