"""Real VP8 for the video tests and bench/video.py: frames encoded once by libvpx (PyAV).

:func:`vp8_frames` encodes a few seconds of a moving test picture at one size, with a
keyframe every ``gop`` frames, so tests and the benchmark forward real encoder output
without encoding while they run.
"""

from __future__ import annotations

import fractions
from functools import cache

import av


@cache
def vp8_frames(
    width: int, height: int, count: int, *, gop: int = 30, bitrate: int = 1_500_000
) -> tuple[tuple[bytes, bool], ...]:
    """``count`` encoded frames ``(data, keyframe)`` of a picture whose colour moves."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.bit_rate = bitrate
    enc.gop_size = gop
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[tuple[bytes, bool]] = []
    n = 0
    while len(out) < count:
        frame = av.VideoFrame(width, height, "yuv420p")
        edge = (n * 4) % width
        row = bytes([16] * edge + [235] * (width - edge))  # a bar that moves right
        for plane, fill in zip(frame.planes, (None, (n * 8) % 256, 128), strict=True):
            rows = plane.height
            line = row if fill is None else bytes([fill]) * plane.width
            stride = plane.line_size
            plane.update((line + bytes(stride - len(line))) * rows)
        frame.pts = n
        for packet in enc.encode(frame):
            out.append((bytes(packet), bool(packet.is_keyframe)))
        n += 1
    return tuple(out[:count])
