"""WebM files from forwarded packets, by remuxing: VP8 frames and Opus packets, never decoded;
Matroska files when the picture is H.264 (WebM holds only VP8/VP9/AV1).

PyAV's muxer takes packets that were encoded elsewhere: the video track is made with
``add_mux_stream`` (no codec context at all) and the Opus track from a template stream
that carries an ``OpusHead`` (Matroska's CodecPrivate for ``A_OPUS``) read back from a
one-packet Ogg/Opus file (:mod:`server.media.oggopus`); that context is copied, never
opened. So no encoder (nor decoder) is opened or called: the file holds the publisher's
own bytes. A small EBML writer would do too, but the muxer is the well-kept one (cues,
cluster sizes, a file that reads while it grows).

:class:`WebmFile` runs on the recording's clock (monotonic seconds since ``t0``, in
milliseconds in the file). Its video is one stream of RTP packets assembled into frames
(RFC 7741: the descriptor stripped, a frame ends at the marker bit) that may change
source or quality — only at a keyframe of the new one, as a viewer's outlet does. A lost
packet drops the frame and waits for the next keyframe (``needs_key``: the caller asks the
publisher for one). The audio is Opus at 20 ms, with silence frames over gaps so that
sound and picture stay in step.

H.264 (``codec="h264"``) goes into Matroska as ``V_MPEG4/ISO/AVC``: its CodecPrivate is the
AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) of the stream's SPS and PPS, and
each frame its NAL units, each behind its length. The caller hands each packet's NAL units
as Annex B (:func:`server.media.h264.annex_b`); the file opens at an access unit that carries
SPS, PPS and an IDR picture, and FFmpeg does the rest: PyAV's muxer reads the parameter sets
from that first packet (its ``extract_extradata`` filter) into the track, whose header
FFmpeg's Matroska muxer writes as the avcC, and it rewrites each frame's start codes as
lengths. So the file holds the publisher's NAL units, byte for byte, and no record of ours
to get wrong (PyAV gives a codec-less stream no other way to set its CodecPrivate).
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Hashable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from . import h264
from .oggopus import SILENCE, OggOpusWriter

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
HOLD = 3000
"""Audio packets (60 s) held while no picture came yet: the file starts at its first
keyframe (whose size the track declares), on the recording's clock; older sound is only
in the Ogg files. A recording with no picture at all makes no WebM file."""
FRAME_MS = 20
JITTER_MS = 60
"""Audio arrival jitter tolerated before a gap is filled with silence."""
OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1", "max_interleave_delta": "500000"}
"""Clusters of about a second written as they fill, so the file can be read while it grows
and a crash loses little."""


def keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """A VP8 keyframe's width and height (RFC 6386 §9.1), or ``None`` if not a keyframe."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little")


def h264_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """The size of an H.264 access unit (Annex B) that a file can start with — one with SPS,
    PPS and an IDR picture — or ``None``."""
    nals = h264.access_unit_nals(frame)
    kinds = {n[0] & 0x1F for n in nals}
    if not {h264.SPS, h264.PPS, h264.IDR} <= kinds:
        return None
    try:
        sps = h264.parse_sps(next(n for n in nals if n[0] & 0x1F == h264.SPS))
    except ValueError:
        return None
    return sps.width, sps.height


CODECS = {"vp8": ("webm", keyframe_size), "h264": ("matroska", h264_keyframe_size)}
"""A picture codec → the container format and the size of a frame a file may start with."""


def _opus_template() -> Any:
    """An Ogg/Opus stream (from our own writer) whose parameters the WebM track copies."""

    class Kept(io.BytesIO):
        def close(self) -> None:  # OggOpusWriter closes its file; keep the bytes
            pass

    buf = Kept()
    writer = OggOpusWriter(buf, 1)
    writer.write(SILENCE)
    writer.close()
    buf.seek(0)
    return av.open(buf, format="ogg")


class WebmFile:
    """One WebM file: a VP8 track (frames from RTP payloads) and, optionally, Opus audio; or
    a Matroska file of the same shape with an H.264 track (``codec="h264"``)."""

    def __init__(self, path: Path, t0: float, *, audio: bool, codec: str = "vp8") -> None:
        self.path = path
        self.codec = codec
        self.format, self.opening_size = CODECS[codec]
        self.t0 = t0
        self.with_audio = audio
        self.out: Any = None
        self.vstream: Any = None
        self.astream: Any = None
        self.held: deque[tuple[bytes, int]] = deque(maxlen=HOLD)
        """Audio that came before the file started: ``(payload, pts)``."""
        self.key: Hashable | None = None
        """What the video track carries now (a source and quality)…"""
        self.target: Hashable | None = None
        """…and what it should carry: taken at that one's next keyframe."""
        self.needs_key = True
        self._frame: list[bytes] | None = None
        self._frame_at = 0
        self._frame_key = False
        self._next_seq = 0
        self._last_video = -1
        self._next_audio = 0
        self.frames = 0
        self.audio_packets = 0

    def _ms(self, now: float) -> int:
        return max(0, round((now - self.t0) * 1000))

    def _open(self, size: tuple[int, int]) -> None:
        self.out = av.open(str(self.path), "w", format=self.format, options=OPTIONS)
        self.vstream = self.out.add_mux_stream(
            self.codec, width=size[0], height=size[1], time_base=MS
        )
        if self.with_audio:
            template = _opus_template()
            self.astream = self.out.add_stream_from_template(template.streams.audio[0])
            self.astream.time_base = MS
            template.close()
        held, self.held = self.held, deque()
        for payload, pts in held:
            self._mux(self.astream, payload, pts, False)
        log.info("stage recording into %s (%dx%d)", self.path, *size)

    def _mux(self, stream: Any, data: bytes, pts: int, key: bool) -> None:
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = MS
        packet.is_keyframe = key
        self.out.mux(packet)

    # -- video -----------------------------------------------------------------------------

    def show(self, key: Hashable | None) -> None:
        """Carry ``key`` from its next keyframe on (the current one until then)."""
        self.target = key
        if key is None:
            self.key = None

    def video(
        self,
        key: Hashable,
        seq: int,
        start: bool,
        keyframe: bool,
        marker: bool,
        data: bytes,
        now: float,
    ) -> bool:
        """One RTP packet's VP8 data (descriptor stripped), or H.264 NAL units (Annex B), of
        ``key``; ``start``: it begins a frame. Returns whether the caller should ask the
        publisher for a keyframe (a switch or a loss waits for one)."""
        if key != self.key and key != self.target:
            return False
        if start:
            if key != self.key:  # the target: switch at its keyframe only
                if not keyframe:
                    return True
                self.key, self.needs_key, self._frame = key, False, None
            elif self._frame is not None or seq != self._next_seq:
                self.needs_key = True  # the previous frame lost its end, or a frame was lost
            if self.needs_key and not keyframe:
                self._frame = None
                return True
            self._frame, self._frame_at, self._frame_key = [data], self._ms(now), keyframe
        elif self._frame is None or key != self.key:
            return False
        elif seq != self._next_seq:
            self._frame, self.needs_key = None, True  # a packet lost: wait for a keyframe
            return True
        else:
            self._frame.append(data)
        self._next_seq = (seq + 1) & 0xFFFF
        if marker:
            self._write_frame(b"".join(self._frame), self._frame_key)
            self._frame = None
            self.needs_key = False
        return False

    def _write_frame(self, frame: bytes, keyframe: bool) -> None:
        if self.out is None:
            size = self.opening_size(frame)
            if size is None:
                return
            self._open(size)
        pts = max(self._frame_at, self._last_video + 1)
        self._last_video = pts
        self._mux(self.vstream, frame, pts, keyframe)
        self.frames += 1

    # -- audio -----------------------------------------------------------------------------

    def audio(self, payload: bytes, now: float) -> None:
        """One 20 ms Opus packet, at its arrival time; silence over gaps."""
        if not self.with_audio:
            return
        due = self._ms(now)
        while due - self._next_audio > JITTER_MS:
            self._audio(SILENCE)
        self._audio(payload)

    def _audio(self, payload: bytes) -> None:
        pts, self._next_audio = self._next_audio, self._next_audio + FRAME_MS
        self.audio_packets += 1
        if self.out is None:
            self.held.append((payload, pts))
        else:
            self._mux(self.astream, payload, pts, False)

    def close(self) -> None:
        """Finish the file (none was made if no picture came)."""
        if self.out is None:
            return
        try:
            self.out.close()
        except (OSError, av.FFmpegError) as exc:
            log.error("cannot finish %s: %s", self.path, exc)
