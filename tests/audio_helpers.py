"""aiortc peers for the audio tests: a microphone that sends real Opus, an ear that records.

Both sides are real aiortc peer connections signalled over a real hemicycle WebSocket. The
loopback patch (``loopback_ice``) is test-only: aioice skips 127.0.0.1 on purpose
(RFC 8445 §5.1.1.1), and these tests run in a network namespace that has nothing else.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from server.client import Client
from server.media.passthrough import EncodedTrack, tap_receiver

from .waiting import eventually

CONFIG = RTCConfiguration(iceServers=[])


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        aioice.ice,
        "get_host_addresses",
        lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [],
    )


async def people(
    node: Any, invites: Any, *roles: tuple[str, str], **extra: dict[str, str]
) -> list[Client]:
    """A client in the plenary for each ``(name, role)``, in order; ``extra[name]`` holds
    more of that person's invite (a booth, a language pair)."""
    out = []
    for name, role in roles:
        token = invites.mint(room="plenary", role=role, name=name, **extra.get(name, {}))
        out.append(await Client.connect(node.url, token))
    return out


def opus_tone(freq: float, count: int, amplitude: int = 8000) -> list[bytes]:
    """``count`` real 20 ms Opus packets of a sine at ``freq`` Hz (libopus through PyAV)."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48_000, "mono", "s16"
    enc.bit_rate = 32_000
    enc.time_base = fractions.Fraction(1, 48_000)
    out: list[bytes] = []
    i = 0
    while len(out) < count:
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.sample_rate = 48_000
        frame.pts = i * 960
        samples = array.array(
            "h",
            (
                int(amplitude * math.sin(2 * math.pi * freq * (i * 960 + n) / 48_000))
                for n in range(960)
            ),
        )
        frame.planes[0].update(samples.tobytes())
        out += [bytes(p) for p in enc.encode(frame)]
        i += 1
    return out[:count]


def tagged(packets: list[bytes], tag: int) -> list[bytes]:
    """Packets that differ per sender yet stay valid Opus: padding bytes carry ``tag``.

    Code-3 framing with padding (RFC 6716 §3.2.5) lets each test packet end in a unique
    marker, so a listener can tell exactly which microphone and which packet it got.
    """
    out = []
    for n, p in enumerate(packets):
        toc = (p[0] & 0xFC) | 3
        marker = tag.to_bytes(2, "big") + n.to_bytes(4, "big")
        pad = len(marker)
        out.append(bytes([toc, 0x41, pad]) + p[1:] + marker)  # 1 frame, padding flag
    return out


def marker(payload: bytes) -> tuple[int, int]:
    return int.from_bytes(payload[-6:-4], "big"), int.from_bytes(payload[-4:], "big")


@dataclass
class Heard:
    payload: bytes
    timestamp: int
    seq: int
    ssrc: int
    at: float


@dataclass
class Ear:
    """A listening peer connection; records every RTP packet per track (mid)."""

    client: Client
    pc: RTCPeerConnection
    tracks: dict[int, list[Heard]] = field(default_factory=dict)
    offers: int = 0

    def on(self, index: int) -> list[Heard]:
        return self.tracks.setdefault(index, [])

    def markers(self, index: int = 0) -> list[tuple[int, int]]:
        return [marker(h.payload) for h in self.on(index)]

    async def wait(self, index: int, count: int, timeout: float = 5.0) -> list[Heard]:
        deadline = time.monotonic() + timeout
        while len(self.on(index)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"track {index} heard {len(self.on(index))} packets, "
                    f"wanted {count} within {timeout} s"
                )
            await asyncio.sleep(0.01)
        return self.on(index)

    async def close(self) -> None:
        await self.pc.close()


async def listen(
    client: Client,
    tracks: int = 2,
    lanes: Any = None,
    config: RTCConfiguration = CONFIG,
    wait: float = 5.0,
) -> Ear:
    """A listening peer connection of ``tracks`` m-lines, asking for ``lanes`` of the floor."""
    pc = RTCPeerConnection(config)
    for _ in range(tracks):
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    ear = Ear(client, pc)
    for index, transceiver in enumerate(pc.getTransceivers()):

        def record(packet: RtpPacket, index: int = index) -> None:
            ear.on(index).append(
                Heard(
                    packet.payload,
                    packet.timestamp,
                    packet.sequence_number,
                    packet.ssrc,
                    time.monotonic(),
                )
            )

        tap_receiver(transceiver.receiver, record)
    extra = {"lanes": lanes} if lanes is not None else {}
    reply = await client.rpc("rtc.offer", purpose="listen", sdp=pc.localDescription.sdp, **extra)
    if not reply["ok"]:
        await pc.close()
        raise AssertionError(f"listen refused: {reply}")
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    ear.offers += 1
    await connected(pc, wait)
    return ear


@dataclass
class Mic:
    client: Client
    pc: RTCPeerConnection
    track: EncodedTrack
    reply: dict[str, Any]
    ts: int = 0

    async def play(self, packets: list[bytes], every: float = 0.02) -> None:
        """Send packets paced like a microphone (``every`` seconds apart)."""
        start = time.monotonic()
        for n, p in enumerate(packets):
            self.track.push(p, self.ts)
            self.ts += 960
            delay = start + (n + 1) * every - time.monotonic()
            if delay > 0:  # not synchronisation: real-time pacing, as a microphone sends
                await asyncio.sleep(delay)

    async def close(self) -> None:
        await self.pc.close()


async def publish(client: Client, target: str = "floor", *, expect_ok: bool = True) -> Mic:
    pc = RTCPeerConnection(CONFIG)
    track = EncodedTrack(limit=5000)
    pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.rpc(
        "rtc.offer", purpose="publish", target=target, sdp=pc.localDescription.sdp
    )
    mic = Mic(client, pc, track, reply)
    if not reply["ok"]:
        await pc.close()
        if expect_ok:
            raise AssertionError(f"publish refused: {reply}")
        return mic
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await connected(pc)
    return mic


async def connected(pc: RTCPeerConnection, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise AssertionError(
                f"peer connection is {pc.connectionState}, not connected "
                "(is the test running in the loopback namespace?)"
            )
        await asyncio.sleep(0.01)


def udp_sockets() -> int:
    """UDP sockets this process holds (from /proc: the inodes of its socket fds)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for row in rows if row.split()[9] in inodes)
    return count


def counted(node: Any, name: str) -> float:
    """A node's counter ``name`` (without ``_total``), summed over all its labels."""
    return sum(
        sample.value
        for family in node.node.metrics.registry.collect()
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


async def settled(node: Any, ears: list[Ear], *, packets_in: int) -> None:
    """Wait until nothing more is on its way to ``ears``.

    That is: ``node`` has taken in ``packets_in`` microphone packets (whatever it did with
    them), and every packet it handed to a listener track has reached the ears. A packet is
    handed out while it is taken in, so after this no further packet can arrive.
    """

    workers = node.node.feature["audio"].workers

    def counts() -> dict[str, float]:
        return {
            # Frames still on their way to a media worker (server/media/workers.py).
            "worker backlog": workers.backlog() if workers is not None else 0,
            "taken in": counted(node, "hemicycle_audio_packets_in"),
            "handed out": counted(node, "hemicycle_audio_packets_out"),
            "heard": sum(len(track) for ear in ears for track in ear.tracks.values()),
        }

    await eventually(
        counts,
        until=lambda c: (
            c["taken in"] >= packets_in
            and not c["worker backlog"]
            and c["heard"] >= c["handed out"]
        ),
        message=f"the node to take in {packets_in} packets and the ears to hear all it sent",
    )


def steps(heard: list[Heard]) -> set[int]:
    """The RTP timestamp steps between consecutive packets (960: one 20 ms frame)."""
    return {
        (b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(heard, heard[1:], strict=False)
    }
