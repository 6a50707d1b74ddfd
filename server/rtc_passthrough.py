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

:func:`self_check` verifies the private names this module relies on and is called when a
node starts media, so an aiortc upgrade that moves them fails at once with a message saying
what changed instead of silently decoding or dropping audio. tests/test_rtc_passthrough.py
covers both directions end to end.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

import aiortc
import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

PINNED = "1.16.0"
OPUS_RATE = 48_000
TIME_BASE = fractions.Fraction(1, OPUS_RATE)

OnPacket = Callable[[RtpPacket], None]


class PassthroughBroken(RuntimeError):
    """aiortc no longer has the internals this module hooks (after an upgrade)."""


def self_check() -> None:
    """Raise :class:`PassthroughBroken` unless the hooked internals look as expected."""
    problems = []
    if aiortc.__version__ != PINNED:
        problems.append(f"aiortc is {aiortc.__version__}, this hook was written for {PINNED}")
    handler = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    if handler is None or not inspect.iscoroutinefunction(handler):
        problems.append("RTCRtpReceiver._handle_rtp_packet is gone or no longer a coroutine")
    else:
        params = list(inspect.signature(handler).parameters)
        if params[:3] != ["self", "packet", "arrival_time_ms"]:
            problems.append(f"RTCRtpReceiver._handle_rtp_packet{params} changed its signature")
    dispatch = getattr(RTCDtlsTransport, "_handle_rtp_data", None)
    if dispatch is None or "receiver._handle_rtp_packet(" not in inspect.getsource(dispatch):
        problems.append("RTCDtlsTransport._handle_rtp_data no longer calls "
                        "receiver._handle_rtp_packet")
    if not hasattr(RtpPacket(), "extensions") or not hasattr(
            RtpPacket().extensions, "audio_level"):
        problems.append("RtpPacket.extensions.audio_level is gone")
    if problems:
        raise PassthroughBroken("; ".join(problems))


def tap_receiver(receiver: RTCRtpReceiver, on_packet: OnPacket) -> None:
    """Hand every RTP packet ``receiver`` gets to ``on_packet`` instead of decoding it.

    Call after ``setRemoteDescription`` (the receiver exists) and before the connection
    carries media. ``on_packet`` runs on the event loop and must not block; RTCP (sender
    reports, BYE) still reaches the receiver as usual.
    """

    async def handle(packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        if receiver._enabled:
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

    def push(self, payload: bytes, timestamp: int) -> None:
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
        self._queue.append((payload, timestamp))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
