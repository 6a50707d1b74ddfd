"""The few parts of an H.264 RTP stream the node reads without decoding. Pure: no I/O.

Two things: a picture's size, from the sequence parameter set (SPS, ITU-T H.264
§7.3.2.1.1), for the room's resolution cap; and the NAL units of an RTP payload
(RFC 6184 §5.6 single NAL unit, §5.7.1 STAP-A, §5.8 FU-A) written as an Annex B byte
stream, which the stage recording hands to the Matroska muxer (server/media/webm.py).

Why the SPS is read by hand: no well-kept Python library parses one from raw bytes without
a decoder. FFmpeg's parser knows it, but PyAV reaches it only through a codec context that
decodes; ``bitstring`` (not installed here) would read the exp-Golomb codes, which are the
easy 15 lines below, and leave the syntax — the part that can be wrong — to us anyway. The
tests check this reader against libx264's SPS at many sizes (cropped, interlaced, High
profile with scaling lists, 4:4:4) and against what FFmpeg's decoder says.
"""

from __future__ import annotations

from dataclasses import dataclass

SPS, PPS, IDR = 7, 8, 5
STAP_A, FU_A = 24, 28
START_CODE = b"\x00\x00\x00\x01"

HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))
"""Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (§7.3.2.1.1)."""


@dataclass(frozen=True, slots=True)
class Sps:
    """What the node needs of a sequence parameter set."""

    profile_idc: int
    level_idc: int
    width: int
    height: int
    """The picture's size after frame cropping (what a player shows)."""


class _Bits:
    """Reads an RBSP bit by bit, most significant first; ``ValueError`` past its end."""

    def __init__(self, rbsp: bytes) -> None:
        self.data, self.at = rbsp, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.at >> 3
            if byte >= len(self.data):
                raise ValueError("SPS truncated")
            value = value << 1 | (self.data[byte] >> (7 - (self.at & 7))) & 1
            self.at += 1
        return value

    def ue(self) -> int:
        """Unsigned exp-Golomb (§9.1)."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Signed exp-Golomb (§9.1.1): 1, 2, 3, 4 … → 1, -1, 2, -2 …"""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: emulation-prevention bytes (``00 00 03``) removed (§7.4.1)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    """scaling_list() of §7.3.2.1.1.1: read only to get past it."""
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + bits.se() + 256) % 256
        last = nxt or last


def parse_sps(nal: bytes) -> Sps:
    """Read an SPS NAL unit (its one-byte header included); ``ValueError`` if malformed.

    A leading part of the NAL unit is enough (the size comes before the VUI), as in the
    first fragment of an FU-A."""
    if not nal or nal[0] & 0x1F != SPS:
        raise ValueError("not an SPS")
    bits = _Bits(unescape(nal[1:]))
    profile_idc = bits.u(8)
    bits.u(8)  # constraint_set0..5 flags, reserved_zero_2bits
    level_idc = bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise ValueError("chroma_format_idc out of range")
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if bits.u(1):  # seq_scaling_list_present_flag[i]
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        cycle = bits.ue()
        if cycle > 255:
            raise ValueError("num_ref_frames_in_pic_order_cnt_cycle out of range")
        for _ in range(cycle):
            bits.se()  # offset_for_ref_frame[i]
    elif poc_type != 2:
        raise ValueError("pic_order_cnt_type out of range")
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    # Frame cropping is in chroma sample units (§7.4.2.1.1, CropUnitX/CropUnitY).
    if separate_planes or chroma_format_idc == 0:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x = 1 if chroma_format_idc == 3 else 2
        unit_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError("frame cropping larger than the picture")
    return Sps(profile_idc, level_idc, width, height)


def nal_units(payload: bytes) -> list[bytes]:
    """The NAL units (or, for an FU-A, the fragment: its first one starts with the
    reconstructed NAL header) that one RTP payload carries; ``ValueError`` if malformed."""
    if not payload:
        raise ValueError("empty H.264 payload")
    kind = payload[0] & 0x1F
    if kind == STAP_A:
        out, at = [], 1
        while at < len(payload):
            if at + 2 > len(payload):
                raise ValueError("truncated STAP-A")
            size = int.from_bytes(payload[at : at + 2], "big")
            if not size or at + 2 + size > len(payload):
                raise ValueError("truncated STAP-A")
            out.append(payload[at + 2 : at + 2 + size])
            at += 2 + size
        return out
    if kind == FU_A:
        if len(payload) < 2:
            raise ValueError("truncated FU-A")
        if payload[1] & 0x80:  # start: the NAL header is the indicator's F/NRI + the type
            return [bytes([payload[0] & 0xE0 | payload[1] & 0x1F]) + payload[2:]]
        return [payload[2:]]
    if kind in (0, 25, 26, 27, 29, 30, 31):
        raise ValueError(f"H.264 payload type {kind} not handled (packetization mode 1)")
    return [payload]


def annex_b(payload: bytes) -> bytes:
    """One RTP payload as Annex B bytes: each NAL unit it starts after a start code; an FU-A
    continuation as its bare fragment. Concatenated in order, a picture's payloads give its
    access unit as an encoder writes it."""
    kind = payload[0] & 0x1F if payload else 0
    if kind == FU_A and len(payload) > 1 and not payload[1] & 0x80:
        return payload[2:]
    return b"".join(START_CODE + nal for nal in nal_units(payload))


def sps_in(payload: bytes) -> bytes | None:
    """The SPS that an RTP payload carries (single, in a STAP-A, or the start of one in an
    FU-A's first fragment), or ``None``."""
    if not payload:
        return None
    kind = payload[0] & 0x1F
    if kind == FU_A and not (len(payload) > 1 and payload[1] & 0x80):
        return None
    if kind not in (SPS, STAP_A, FU_A):
        return None
    return next((n for n in nal_units(payload) if n and n[0] & 0x1F == SPS), None)


def picture_size(payload: bytes) -> tuple[int, int] | None:
    """The picture size an RTP payload declares in its SPS, or ``None`` if it carries none;
    ``ValueError`` if malformed."""
    nal = sps_in(payload)
    if nal is None:
        return None
    sps = parse_sps(nal)
    return sps.width, sps.height


def access_unit_nals(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit (four- or three-byte start codes). A NAL unit
    never ends in a zero byte (its RBSP trailing bits end in a one, §7.3.2.11), so zeros
    before a start code belong to the start code."""
    parts = (n.rstrip(b"\x00") for n in annexb.split(b"\x00\x00\x01"))
    return [n for n in parts if n]
