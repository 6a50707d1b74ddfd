"""The few bytes of a video payload the forwarder reads and rewrites. Pure: no I/O.

A forwarder never decodes video, but it must know three things of each packet: whether it
starts a keyframe (a viewer may only start or switch layer there), the VP8 payload
descriptor's PictureID and TL0PICIDX (rewritten per viewer so that dropped or switched
packets leave no gaps the decoder would wait for), and a keyframe's resolution (the room's
cap). RFC 7741 §4.2 (VP8 payload descriptor), RFC 6386 §9.1 (frame tag, start code and
size of a keyframe), RFC 6184 §5.4–5.8 (H.264 NAL units, STAP-A, FU-A).

:func:`packetize` is the other direction, used by tests and bench/video.py to send
pre-encoded VP8 the way a browser does (one frame over several packets, 15-bit PictureID).
"""

from __future__ import annotations

from dataclasses import dataclass

KEYFRAME_START = b"\x9d\x01\x2a"
"""The start code after a keyframe's 3-byte frame tag (RFC 6386 §9.1)."""


@dataclass(frozen=True, slots=True)
class Vp8:
    """One VP8 RTP payload's descriptor, as far as forwarding needs it."""

    start: bool
    """S=1 and PID=0: the first packet of a frame."""
    keyframe: bool
    """The first packet of a keyframe (only then can a viewer start decoding)."""
    picture_id: int | None
    picture_id_at: int
    """Byte offset of the PictureID (0: absent)."""
    long_id: bool
    """The PictureID has 15 bits (M=1), else 7."""
    tl0picidx: int | None
    tl0_at: int
    tid: int | None
    """Temporal layer index (0: the base layer), when the descriptor carries it."""
    header: int
    """Descriptor length: the VP8 payload starts here."""
    width: int = 0
    height: int = 0
    """A keyframe's size (0 on other packets)."""


def parse(payload: bytes) -> Vp8:
    """Read a VP8 payload descriptor; ``ValueError`` when it is truncated."""
    size = len(payload)
    if size < 1:
        raise ValueError("empty VP8 payload")
    b0 = payload[0]
    start = bool(b0 & 0x10) and (b0 & 0x07) == 0
    at = 1
    picture_id = tl0 = tid = None
    pid_at = tl0_at = 0
    long_id = False
    if b0 & 0x80:  # X: extension byte follows
        if size < 2:
            raise ValueError("truncated VP8 descriptor")
        x = payload[1]
        at = 2
        if x & 0x80:  # I: PictureID
            if at >= size:
                raise ValueError("truncated VP8 PictureID")
            pid_at = at
            if payload[at] & 0x80:  # M: 15-bit
                if at + 1 >= size:
                    raise ValueError("truncated VP8 PictureID")
                long_id = True
                picture_id = ((payload[at] & 0x7F) << 8) | payload[at + 1]
                at += 2
            else:
                picture_id = payload[at]
                at += 1
        if x & 0x40:  # L: TL0PICIDX
            if at >= size:
                raise ValueError("truncated VP8 TL0PICIDX")
            tl0_at = at
            tl0 = payload[at]
            at += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX byte
            if at >= size:
                raise ValueError("truncated VP8 TID")
            if x & 0x20:
                tid = payload[at] >> 6
            at += 1
    keyframe = False
    width = height = 0
    if start and at < size:
        keyframe = not payload[at] & 0x01  # P=0 in the frame tag
        if keyframe and size >= at + 10 and payload[at + 3 : at + 6] == KEYFRAME_START:
            width = (payload[at + 6] | payload[at + 7] << 8) & 0x3FFF
            height = (payload[at + 8] | payload[at + 9] << 8) & 0x3FFF
    return Vp8(start, keyframe, picture_id, pid_at, long_id, tl0, tl0_at, tid, at, width, height)


def rewrite(payload: bytes, d: Vp8, picture_id: int | None, tl0picidx: int | None) -> bytes:
    """``payload`` with its PictureID and TL0PICIDX replaced (where present), same length."""
    if (picture_id is None or not d.picture_id_at) and (tl0picidx is None or not d.tl0_at):
        return payload
    out = bytearray(payload)
    if picture_id is not None and d.picture_id_at:
        if d.long_id:
            out[d.picture_id_at] = 0x80 | ((picture_id >> 8) & 0x7F)
            out[d.picture_id_at + 1] = picture_id & 0xFF
        else:
            out[d.picture_id_at] = picture_id & 0x7F
    if tl0picidx is not None and d.tl0_at:
        out[d.tl0_at] = tl0picidx & 0xFF
    return bytes(out)


def picture_id_mask(d: Vp8) -> int:
    return 0x7FFF if d.long_id else 0x7F


def h264_keyframe(payload: bytes) -> bool:
    """Whether an H.264 RTP payload starts an IDR picture or carries its SPS."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A: [hdr] ([size:2] [nal…])*
        at = 1
        while at + 2 < len(payload):
            n = int.from_bytes(payload[at : at + 2], "big")
            if payload[at + 2] & 0x1F in (5, 7):
                return True
            at += 2 + n
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: start bit and the fragmented NAL's type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (5, 7)
    return False


def h264_start(payload: bytes) -> bool:
    """Whether an H.264 payload starts a NAL unit (anything but an FU-A continuation)."""
    if not payload:
        return False
    return payload[0] & 0x1F != 28 or (len(payload) > 1 and bool(payload[1] & 0x80))


def packetize(
    frame: bytes,
    picture_id: int,
    *,
    tl0picidx: int | None = None,
    tid: int | None = None,
    size: int = 1200,
) -> list[bytes]:
    """Split one encoded VP8 frame into RTP payloads as a browser does (15-bit PictureID)."""
    x = 0x80 | (0x40 if tl0picidx is not None else 0) | (0x20 if tid is not None else 0)
    ext = bytes([0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF])
    if tl0picidx is not None:
        ext += bytes([tl0picidx & 0xFF])
    if tid is not None:
        ext += bytes([(tid & 3) << 6 | (0x20 if tid else 0)])
    out = []
    for n, at in enumerate(range(0, max(len(frame), 1), size)):
        out.append(bytes([0x90 if n == 0 else 0x80, x]) + ext + frame[at : at + size])
    return out
