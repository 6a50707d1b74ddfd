"""The VP8 descriptor reader and rewriter (server/media/vp8.py), against real libvpx output."""

from __future__ import annotations

import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor
from hypothesis import given
from hypothesis import strategies as st

from server.media import vp8

from .video_helpers import vp8_frames


def test_keyframes_and_their_size_are_read_from_real_frames() -> None:
    frames = vp8_frames(320, 180, 35, gop=30)
    assert frames[0][1] and frames[30][1] and not frames[1][1]
    for n, (data, key) in enumerate(frames):
        packets = vp8.packetize(data, picture_id=1000 + n, tl0picidx=n % 256, tid=0)
        first = vp8.parse(packets[0])
        assert first.start and first.keyframe == key
        assert first.picture_id == 1000 + n and first.long_id and first.tl0picidx == n % 256
        assert first.tid == 0
        if key:
            assert (first.width, first.height) == (320, 180)
        for p in packets[1:]:
            later = vp8.parse(p)
            assert not later.start and not later.keyframe and later.picture_id == 1000 + n
        assert b"".join(p[vp8.parse(p).header :] for p in packets) == data


def test_agrees_with_aiortc_descriptor_parser() -> None:
    data, _ = vp8_frames(320, 180, 1)[0]
    for p in vp8.packetize(data, picture_id=0x1234 & 0x7FFF, tl0picidx=7, tid=2):
        ours = vp8.parse(p)
        theirs, rest = VpxPayloadDescriptor.parse(p)
        assert ours.picture_id == theirs.picture_id and ours.tl0picidx == theirs.tl0picidx
        assert p[ours.header :] == rest and theirs.tid is not None and ours.tid == theirs.tid[0]
        assert ours.start == bool(theirs.partition_start and theirs.partition_id == 0)


@given(
    pid=st.integers(0, 0x7FFF),
    new_pid=st.integers(0, 0x7FFF),
    tl0=st.integers(0, 255),
    new_tl0=st.integers(0, 255),
)
def test_rewrite_changes_only_the_two_fields(
    pid: int, new_pid: int, tl0: int, new_tl0: int
) -> None:
    payload = vp8.packetize(b"\x10\x02\x00abcdef", picture_id=pid, tl0picidx=tl0, tid=1)[0]
    d = vp8.parse(payload)
    out = vp8.rewrite(payload, d, new_pid, new_tl0)
    again = vp8.parse(out)
    assert (again.picture_id, again.tl0picidx, again.tid) == (new_pid, new_tl0, 1)
    assert len(out) == len(payload) and out[again.header :] == payload[d.header :]


def test_seven_bit_picture_id_is_kept_seven_bits() -> None:
    payload = bytes([0x90, 0x80, 0x05]) + b"\x00\x00\x00"
    d = vp8.parse(payload)
    assert d.picture_id == 5 and not d.long_id and d.header == 3
    assert vp8.parse(vp8.rewrite(payload, d, 130, None)).picture_id == 130 & 0x7F


def test_without_extension_nothing_is_rewritten() -> None:
    payload = bytes([0x10, 0x01, 0x02])
    d = vp8.parse(payload)
    assert d.start and not d.keyframe and d.picture_id is None
    assert vp8.rewrite(payload, d, 9, 9) is payload


@pytest.mark.parametrize("cut", [b"", b"\x80", b"\x80\x80", b"\x80\xc0\x81", b"\x80\x20"])
def test_truncated_descriptors_are_refused(cut: bytes) -> None:
    with pytest.raises(ValueError):
        vp8.parse(cut)


def test_h264_keyframes_single_stap_a_fu_a() -> None:
    assert vp8.h264_keyframe(bytes([0x65, 1, 2]))  # IDR slice
    assert vp8.h264_keyframe(bytes([0x67, 1, 2]))  # SPS
    assert not vp8.h264_keyframe(bytes([0x41, 1, 2]))  # non-IDR slice
    stap = bytes([0x78]) + (2).to_bytes(2, "big") + bytes([0x09, 0x10])
    assert not vp8.h264_keyframe(stap)
    stap += (3).to_bytes(2, "big") + bytes([0x67, 0x42, 0x00])
    assert vp8.h264_keyframe(stap)
    assert vp8.h264_keyframe(bytes([0x7C, 0x85, 0]))  # FU-A start of an IDR
    assert not vp8.h264_keyframe(bytes([0x7C, 0x05, 0]))  # FU-A continuation
    assert vp8.h264_start(bytes([0x7C, 0x85])) and not vp8.h264_start(bytes([0x7C, 0x05]))
